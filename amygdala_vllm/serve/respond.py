"""Splice scores into vLLM's own OpenAI responses: full JSON bodies and SSE streams.

vLLM builds the response (text, finish reasons, usage, tool calls, ...); this
module only adds ``choices[i].amygdala``. Engine requests map to choices the
way vLLM numbers them (read in ``vllm/v1/engine/async_llm.py`` and
``entrypoints/openai/completion/serving.py``, 0.32): an engine request id is
``{external}-{8 random}``; with ``n > 1`` each sample is a child
``{k}_{internal}``; completions give prompt ``i`` the external id
``cmpl-{base}-{i}`` and its samples the choice indices ``i * n + k``.

In a stream a chunk carries the positions newly scored since the previous
chunk. Scores lag the text by one token: a token is scored when it is fed back
through the model, which happens in the step that samples the next one. The
chunk that finishes a choice waits for one final drain and carries the rest
plus the pooled summary.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from ..vllm_ext.rpc import RequestScores
from .assemble import ChoiceBuilder, SequenceScores
from .broker import ScoreBroker
from .schema import encode_scores

__all__ = ["choice_index", "ResponseScorer", "annotate_stream"]

_CHILD = re.compile(r"^(\d+)_(.*)$")


def choice_index(req_id: str, completions: bool, n: int) -> int:
    """The response choice an engine request id feeds."""
    k, rest = 0, req_id
    if n > 1:
        m = _CHILD.match(req_id)
        if m:
            k, rest = int(m.group(1)), m.group(2)
    if not completions:
        return k
    external = rest.rpartition("-")[0]
    prompt = external.rpartition("-")[2]
    return (int(prompt) if prompt.isdigit() else 0) * n + k


class ResponseScorer:
    """Collects one HTTP request's drained scores by choice and writes them into its response."""

    def __init__(self, builder: ChoiceBuilder, completions: bool, n: int):
        self.builder = builder
        self.completions = completions
        self.n = n
        self.seqs: dict[int, SequenceScores] = {}

    def absorb(self, drained: list[RequestScores]) -> None:
        """File drained scores under their choices."""
        for d in drained:
            idx = choice_index(d.req_id, self.completions, self.n)
            self.seqs.setdefault(idx, SequenceScores()).add(d.positions, d.token_ids, d.scores, d.prompt_len)

    def annotate_full(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every choice of a non-streamed response gets all its scores and the summary."""
        for choice in body.get("choices") or []:
            seq = self.seqs.get(int(choice.get("index", 0)), SequenceScores())
            choice["amygdala"] = encode_scores(self.builder.build(seq, seq.positions(), pooled=True))
        return body

    def annotate_chunk(self, choice: dict[str, Any], final: bool) -> None:
        """One streamed choice: its newly scored tokens; the summary too if it is ``final``."""
        seq = self.seqs.setdefault(int(choice.get("index", 0)), SequenceScores())
        new = seq.take_new()
        if new or final:
            choice["amygdala"] = encode_scores(self.builder.build(seq, new, pooled=final))


async def annotate_stream(body: AsyncIterator[Any], scorer: ResponseScorer, broker: ScoreBroker,
                          tag: str) -> AsyncIterator[str]:
    """Pass vLLM's SSE events through, adding scores to each chunk's choices.

    Whatever way the stream ends (finished, client gone, error), the tag is
    discarded so the worker keeps nothing for it.
    """
    try:
        async for item in body:
            text = item.decode() if isinstance(item, (bytes, bytearray)) else str(item)
            out = []
            for event in text.split("\n\n"):
                if not event:
                    continue
                out.append(await _annotate_event(event, scorer, broker, tag))
            yield "".join(e + "\n\n" for e in out)
    finally:
        broker.discard(tag)
        aclose = getattr(body, "aclose", None)
        if aclose is not None:  # let vLLM's generator run its own clean-up (it aborts the engine request)
            await aclose()


async def _annotate_event(event: str, scorer: ResponseScorer, broker: ScoreBroker, tag: str) -> str:
    if not event.startswith("data: ") or event.strip() == "data: [DONE]":
        return event
    try:
        chunk = json.loads(event[len("data: "):])
    except json.JSONDecodeError:
        return event
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not choices:
        return event
    scorer.absorb(broker.take(tag))
    for choice in choices:
        final = choice.get("finish_reason") is not None
        if final:
            scorer.absorb(await broker.final(tag))
        scorer.annotate_chunk(choice, final)
    return "data: " + msgspec.json.encode(chunk).decode()
