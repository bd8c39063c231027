"""Readout mode from the driver: load vectors into vLLM's workers and score text.

The workers load the vectors themselves from ``VLLM_READOUT_VECTORS`` /
``VLLM_READOUT_MANIFEST``, exactly as serving does, and project every token's
residual stream at the manifest's layers (the variables are set while the
:class:`Readout` is open and restored by :meth:`Readout.close`). With ``check_agreement`` the same
pass also pools the raw activations, so the runtime scores can be compared with
the offline dot product ``activation . vector``: linear pooling commutes with the
projection, so the two must agree to rounding.

Pooled scores are keyed by pooling-mode name, one entry per mode of
:data:`~amygdala_vllm.pooling_modes.MODES`, each the per-token score series
reduced by that mode (:func:`~amygdala_vllm.pooling_modes.pool_scores`). For a
linear mode (mean, last) that equals ``pooled activation . vector``; for a
non-linear one (max) it is ``max_t(row_t . vector)``, which is not
``max(rows) . vector`` (the feature ``reduce --pooling max`` trains on), so
calibration measured on the latter does not transfer to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..engine_settings import ENGINE_DEFAULTS, EngineSettings
from ..errors import FormatError
from ..formats import ReadoutManifest
from ..pooling_modes import MODES, pool_scores
from ..vectors_file import load as load_vectors_file
from ..vectors_file import pair_paths, read_manifest, readout_env

__all__ = ["TextScores", "Readout", "pooled_scores"]


@dataclass(frozen=True)
class TextScores:
    """Per-token and pooled projections of one text onto every concept at every hooked layer."""

    token_ids: list[int]
    tokens: list[str]
    scores: np.ndarray  # float32 [T, L, E]
    #: pooling mode -> float32 [L, E], every mode of ``pooling_modes.MODES`` in its order: the per-token
    #: series ``scores`` reduced by that mode (linear modes: ``pooled activation . vector``; ``max``: max over
    #: tokens of ``row . vector``, not ``max(rows) . vector``)
    pooled: dict[str, np.ndarray]
    agreement: float | None
    #: max |pooled activation| x |vector| over layers and concepts: the scale of the agreement bar
    agreement_scale: float | None = None


class Readout:
    """A vLLM engine in readout mode for one vectors file; use as a context manager.

    ``engine`` says how the engine starts (its model None: the manifest's;
    ``batch_size`` texts go to vLLM per call). ``llm`` reuses an engine already
    started with the amygdala worker extension (vLLM keeps distributed state in
    process globals, so a process should hold one engine per model, not start
    and drop many).
    """

    def __init__(self, vectors: Path, manifest: Path | None = None, *, engine: EngineSettings = ENGINE_DEFAULTS,
                 check_agreement: bool = False, llm: Any = None):
        from ..dtype_choice import resolve_dtype
        from ..model_config import resolve_max_model_len
        from ..models import resolve_model
        from ..vllm_ext.engine import ReadoutSession, open_engine

        engine.check()
        vectors, manifest = pair_paths(vectors, manifest)
        if not vectors.is_file():
            raise FormatError(f"vectors file {vectors} does not exist (run `amygdala-vllm reduce`)")
        self.manifest: ReadoutManifest = read_manifest(manifest)
        self.batch_size = engine.batch_size
        max_model_len = engine.max_model_len
        if llm is not None:  # a running engine knows its context; its model may not be a local folder
            from ..vllm_ext.engine import model_info

            max_model_len = max_model_len or int(model_info(llm)["max_model_len"])
        else:
            model = resolve_model(engine.model or self.manifest.model)
            max_model_len = resolve_max_model_len(model, max_model_len)
            engine = msgspec.structs.replace(engine, model=model, dtype=resolve_dtype(engine.dtype).dtype,
                                             max_model_len=max_model_len)
        self.max_prompt_tokens = max_model_len - 1
        self._env = contextlib.ExitStack()
        self._env.enter_context(readout_env(vectors, manifest))
        try:
            self.llm = llm if llm is not None else open_engine(engine, self.manifest.layers)
            self.tokenizer = self.llm.get_tokenizer()
            skip = self.manifest.skip_first_tokens if check_agreement else None
            # A fresh engine's workers read the VLLM_READOUT_* variables set above, as serving's do. A reused
            # engine's worker processes copied the environment when they started, so they get the paths.
            given = (str(vectors), str(manifest)) if llm is not None else (None, None)
            self._session = ReadoutSession(self.llm, *given, capture_skip_first_tokens=skip)
        except BaseException:
            self._env.close()
            raise
        self._vectors = (
            [m.astype(np.float32) for m in load_vectors_file(vectors, manifest).matrices] if check_agreement else None
        )

    def __enter__(self) -> Readout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop readout on the workers and restore the environment (the engine is freed with this object)."""
        try:
            self._session.close()
        finally:
            self._env.close()

    def chat_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a chat conversation rendered with the model's chat template."""
        try:
            ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
        except Exception as exc:  # tokenizers raise many types for a missing or failing template
            raise FormatError(f"cannot render the conversation with the model's chat template: {exc}") from exc
        if hasattr(ids, "keys"):  # a BatchEncoding in recent transformers
            ids = ids["input_ids"]
        return list(ids)

    def score_texts(self, texts: list[str], progress: Callable[[int], None] | None = None) -> list[TextScores]:
        """Score plain texts (tokenized the way vLLM tokenizes a text prompt; truncated to the context)."""
        return self.score_token_ids([list(self.tokenizer.encode(t))[: self.max_prompt_tokens] for t in texts], progress)

    def score_token_ids(self, prompts: list[list[int]], progress: Callable[[int], None] | None = None) -> list[TextScores]:
        """Score token-id prompts in batches; ``progress(n)`` after each batch."""
        out: list[TextScores] = []
        for b in range(0, len(prompts), self.batch_size):
            batch = prompts[b : b + self.batch_size]
            scores, pooled = self._session.run(batch)
            for k, (ids, sc) in enumerate(zip(batch, scores)):
                out.append(self._text_scores(ids, sc, pooled[k] if pooled is not None else None))
            if progress:
                progress(len(batch))
        return out

    def _text_scores(self, ids: list[int], sc: np.ndarray, captured: Any) -> TextScores:
        pooled = pooled_scores(sc, self.manifest.skip_first_tokens)
        agreement = scale = None
        if captured is not None and self._vectors is not None:
            # Only a linear mode commutes with the projection, so only those can be compared.
            linear = [name for name, m in MODES.items() if m.linear and name in captured.pooled]
            agreement = float(max(np.abs(np.stack([captured.pooled[name][l] @ v.T for l, v in enumerate(self._vectors)])
                                         - pooled[name]).max() for name in linear))
            vnorm = [float(np.linalg.norm(v, axis=1).max()) for v in self._vectors]
            rows = [np.stack([captured.pooled[name][l] for name in linear]) for l in range(len(vnorm))]
            scale = max(float(np.linalg.norm(r, axis=1).max()) * vn for r, vn in zip(rows, vnorm))
        tokens = [self.tokenizer.decode([t]) for t in ids]
        return TextScores(token_ids=list(ids), tokens=tokens, scores=sc, pooled=pooled, agreement=agreement,
                          agreement_scale=scale)


def pooled_scores(scores: np.ndarray, skip_first_tokens: int) -> dict[str, np.ndarray]:
    """Every registered mode's reduction of a per-token series ``scores[T, L, E]``, as float32, in registry order."""
    return {name: pool_scores(name, scores, skip_first_tokens).astype(np.float32) for name in MODES}
