"""What the serving endpoint plugin needs from vLLM's OpenAI server, and nothing else.

The plugin itself (``serve/endpoint.py``) is serving-stage code and imports no
vLLM; the two things that must name vLLM's server internals live here:

- :func:`completion_routes`: ``/v1/chat/completions`` and ``/v1/completions``
  declared with vLLM's own request models and validation dependency, each
  handing the request and vLLM's own handler to the plugin's ``serve`` function
  (read in vLLM 0.32, ``entrypoints/openai/chat_completion/api_router.py`` and
  ``completion/api_router.py``);
- :func:`api_key_check`: vLLM's ``--api-key`` check for routes its middleware
  does not guard. ``AuthenticationMiddleware``
  (``entrypoints/serve/middleware/authenticate.py``) guards only paths under
  ``/v1``, ``/v2``, ``/inference`` and ``/cohere``; ``/amygdala/*`` would
  answer anyone. The check uses the same tokens (``--api-key``, else
  ``VLLM_API_KEY``: ``middleware/register.py``), the same comparison (the
  middleware's own ``verify_token``) and the same 401 body.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from vllm.entrypoints.openai.chat_completion.api_router import create_chat_completion
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion.api_router import create_completion
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.serve.utils.api_utils import validate_json_request

__all__ = ["ServeFn", "AuthCheck", "completion_routes", "api_key_check", "unauthorized"]

ServeFn = Callable[[Any, Request, Any, bool], Awaitable[Response]]
"""``serve(request, raw_request, vllm_handler, completions)``: the plugin's handling of one completion request."""

AuthCheck = Callable[[Request], "Response | None"]
"""``check(raw_request)``: None if the request may pass, else the 401 response to send."""


def completion_routes(serve: ServeFn) -> APIRouter:
    """The two completion routes (replacing vLLM's core ones of the same path), handled by ``serve``."""
    router = APIRouter()

    @router.post("/v1/chat/completions", dependencies=[Depends(validate_json_request)])
    async def amygdala_chat_completion(request: ChatCompletionRequest, raw_request: Request) -> Response:
        """vLLM's chat completions, with ``choices[i].amygdala`` for requests that opt in."""
        return await serve(request, raw_request, create_chat_completion, False)

    @router.post("/v1/completions", dependencies=[Depends(validate_json_request)])
    async def amygdala_completion(request: CompletionRequest, raw_request: Request) -> Response:
        """vLLM's completions, with ``choices[i].amygdala`` for requests that opt in."""
        return await serve(request, raw_request, create_completion, True)

    return router


def unauthorized() -> Response:
    """vLLM's 401 for a guarded path without the key (``AuthenticationMiddleware.__call__``)."""
    return JSONResponse(content={"error": "Unauthorized"}, status_code=401)


def api_key_check(args: Namespace) -> AuthCheck:
    """The server's ``--api-key`` check, exactly as vLLM applies it to ``/v1/*`` (no key configured: all pass)."""
    import vllm.envs as envs
    from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

    tokens = [key for key in (getattr(args, "api_key", None) or [envs.VLLM_API_KEY]) if key]
    if not tokens:
        return lambda raw_request: None
    middleware = AuthenticationMiddleware(None, tokens=tokens)  # type: ignore[arg-type]  # only verify_token is used

    def check(raw_request: Request) -> Response | None:
        if raw_request.method == "OPTIONS" or middleware.verify_token(raw_request.headers):
            return None
        return unauthorized()

    return check
