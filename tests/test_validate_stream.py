"""validate's memory does not grow with the held-out texts' tokens: scores are reduced as they arrive.

Behaviour, not timing: the same validate run on N and 4N held-out texts (the
real readout engine on the tiny model, shared with the other engine tests);
the peak of traced allocations while the engine scores must grow far less
than 4x. Before validate/stream.py the driver kept every text's per-token
series ``[T, L, E]`` until the end, and this ratio was close to 4.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from amygdala_vllm.formats import Calibration
from amygdala_vllm.pairs.build import PairsOptions, build_dataset
from amygdala_vllm.pairs.sources import SourceSpec
from amygdala_vllm.engine_settings import EngineSettings
from amygdala_vllm.validate import ValidateOptions, run_validate
from amygdala_vllm.validate.evaluate import agreement_of, projections_from_scores
from amygdala_vllm.validate.stream import ScoreStream

LAYERS = [1, 3]


def test_stream_equals_stacking_every_text_at_once() -> None:
    from amygdala_vllm.readout.scorer import TextScores, pooled_scores

    rng = np.random.default_rng(0)
    texts = []
    for n in (3, 7, 1, 12):
        series = rng.normal(size=(n, 2, 5)).astype(np.float32)
        texts.append(TextScores(list(range(n)), ["t"] * n, series, pooled_scores(series, 1), float(rng.uniform()),
                                float(rng.uniform(1, 9))))
    ids = [4, 0, 9, 2]
    stream = ScoreStream(ids, (2, 5))
    stream.add(texts[:1])
    stream.add(texts[1:])
    whole = projections_from_scores(texts, ids)
    for mode, rows in whole.pooled.items():
        np.testing.assert_array_equal(stream.projections().of(mode), rows)
    assert stream.agreement("fp32", 128) == agreement_of(texts, "fp32", 128)
    with pytest.raises(ValueError, match="3 scores for 4 text ids"):
        partial = ScoreStream(ids)
        partial.add(texts[:3])
        partial.projections()


@pytest.mark.engine
def test_validate_peak_memory_is_flat_in_the_number_of_heldout_texts(engine_pool, tiny_llama_dir, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from random_vectors import write_vectors

    from amygdala_vllm.readout.scorer import Readout

    ds = tmp_path / "ds"
    build_dataset(SourceSpec(), ds, PairsOptions())
    from amygdala_vllm.dataset import load_dataset

    emotions = sorted(load_dataset(ds).info.emotions)
    # Many concepts (most with no held-out texts: reported n/a) make each text's per-token series large.
    concepts = emotions + [f"extra{k}" for k in range(256 - len(emotions))]
    cal = {c: {str(l): Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=1.0, raw_norm=1.0) for l in LAYERS}
           for c in concepts}
    vec, man, _ = write_vectors(tmp_path, tiny_llama_dir, layers=LAYERS, concepts=concepts, calibration=cal)
    llm = engine_pool.get(tiny_llama_dir)
    # The plots of 256 concepts are drawn after the engine closes, outside the measured peak, and cost ~70 s
    # of matplotlib per run here: what is measured is scoring, so this run draws none (report files still written).
    from amygdala_vllm.validate import report as report_module

    monkeypatch.setattr(report_module, "render_plots", lambda report: {"auroc.png": b"", "crosstalk.png": b""})
    monkeypatch.setattr(report_module, "specificity_png", lambda report: b"")
    peaks: dict[int, int] = {}

    def measure(n: int) -> int:
        @contextlib.contextmanager
        def opener(vectors: Path, manifest: Path, engine: EngineSettings) -> Iterator[Readout]:
            with Readout(vectors, manifest, engine=engine, check_agreement=True, llm=llm) as r:
                tracemalloc.reset_peak()
                yield r  # everything scored while the engine is open is inside this peak
                peaks[n] = tracemalloc.get_traced_memory()[1]

        tracemalloc.start()
        try:
            report = run_validate(ValidateOptions(vectors=vec, training_data_dir=ds, output_dir=tmp_path / f"r{n}",
                                                  engine=EngineSettings(dtype="fp32", batch_size=2), max_texts=n),
                                  open_readout=opener).report
        finally:
            tracemalloc.stop()
        assert report.heldout_texts == n
        return peaks[n]

    small, large = measure(8), measure(32)
    # Holding every text's [T, 2, 256] float32 series made 8 -> 32 texts cost ~2.4-2.6x here (texts of ~100
    # tokens over ~2.6 MB of other allocations); streaming keeps one call's series (8 texts), whose size still
    # varies with the longest texts drawn and the engine's batching (measured 1.33x and 1.58x).
    assert large < 2.0 * small, (small, large, large / small)
