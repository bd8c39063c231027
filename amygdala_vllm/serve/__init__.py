"""Serving: per-request emotion readout on vLLM's own OpenAI server (``amygdala-vllm serve``).

Nothing here imports vLLM. This stage sits above the engine layer: it may
import ``vllm_ext/`` (the serving worker extension ``vllm_ext/serve_worker.py``,
the score store, the reply codec ``vllm_ext/rpc.py``, and the vLLM server
pieces of ``vllm_ext/serve_endpoint.py``); nothing in ``vllm_ext/`` imports it.

- :mod:`.endpoint`: the ``vllm.endpoint_plugins`` entry (routes, drains, ``/amygdala/*``).

- :mod:`.options`: the ``vllm_xargs`` keys a client sends, validated.
- :mod:`.schema`: the ``amygdala`` object of each response choice (msgspec).
- :mod:`.assemble`: worker scores -> that object (selection, calibration, pooling).
- :mod:`.broker`: batched drains (one worker round trip for all waiting requests).
- :mod:`.respond`: splicing scores into vLLM's JSON responses and SSE streams.
- :mod:`.launch`: the server's command line and environment, checked up front.
"""
