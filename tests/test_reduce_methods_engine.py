"""Every reduce method's vectors, loaded into vLLM's readout, score exactly like the offline projection.

And the per-token calibration: per-token z of the train texts, read back from
the engine at a hooked layer, centres on +1 for positives and -1 for negatives.
Tiny Llama, fp32, the session's shared engine.
"""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.formats import ExampleRecord
from amygdala_vllm.validate.compare import VARIANTS as COMPARED
from text_datasets import text_record, varied_texts, write_dataset_dir

pytestmark = pytest.mark.engine

EMOTIONS = ("calm", "joy", "anger", "awe")
#: name -> ReduceOptions fields, for every variant ``validate --compare-methods`` ranks, and ``auto`` (format 2)
VARIANTS = {name: dict(method=m, neutral_variance=nv, remove_shared=k) for name, (m, nv, k) in COMPARED.items()}
VARIANTS["auto"] = dict(method="auto")


def _dataset(path):
    """4 emotions with 8 positives each (6 train, 2 held out) and 28 shared neutral negatives."""
    texts = varied_texts(60, max_words=40, seed=3)
    examples = []
    for e, emo in enumerate(EMOTIONS):
        for k in range(8):
            examples.append(ExampleRecord(emotion=emo, polarity="positive", text_id=e * 8 + k, score=9.0,
                                          split="train" if k < 6 else "heldout"))
        for t in range(32, 60):
            examples.append(ExampleRecord(emotion=emo, polarity="negative", text_id=t, score=None,
                                          split="train" if t < 54 else "heldout"))
    return write_dataset_dir(path, [text_record(i, t) for i, t in enumerate(texts)], examples), texts, examples


@pytest.fixture(scope="module")
def reduced(engine_pool, tiny_llama_dir, tmp_path_factory):
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.extract.run import ExtractOptions, run_extract
    from amygdala_vllm.reduce import ReduceOptions, reduce

    root = tmp_path_factory.mktemp("methods-engine")
    llm = engine_pool.get(tiny_llama_dir)
    ds, texts, examples = _dataset(root / "ds")
    act = root / "act"
    run_extract(ExtractOptions(dataset_dir=ds, output_dir=act, layers=[1, 3], engine=EngineSettings(
        model=str(tiny_llama_dir), dtype="fp32", batch_size=16, max_model_len=512)), llm=llm)
    out = {}
    for name, fields in VARIANTS.items():
        vec = root / f"{name}.safetensors"
        reduce([act], ds, vec, ReduceOptions(**fields))  # type: ignore[arg-type]
        out[name] = vec
    return llm, act, texts, examples, out


def _score(llm, vec, texts):
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.readout.scorer import Readout

    with Readout(vec, None, engine=EngineSettings(dtype="fp32", batch_size=16), check_agreement=True, llm=llm) as ro:
        return ro.score_texts(texts), ro.manifest


@pytest.mark.parametrize("name", list(VARIANTS))
def test_runtime_readout_equals_offline_projection(reduced, name: str) -> None:
    from amygdala_vllm.reduce import open_activations
    from amygdala_vllm.validate.vectors import load_manifest, load_vectors

    llm, act, texts, _, out = reduced
    vec = out[name]
    ids = np.arange(0, 60, 3)
    scores, _ = _score(llm, vec, [texts[i] for i in ids])
    man = load_manifest(vec.with_suffix(".manifest.json"))
    vectors = load_vectors(vec, man)
    acts = open_activations([act])
    offline = np.einsum("nlh,elh->nle", acts.read(ids, "mean"), vectors)
    runtime = np.stack([s.pooled["mean"] for s in scores]).astype(np.float64)
    assert max(s.agreement for s in scores) <= 1e-4
    np.testing.assert_allclose(runtime, offline, atol=1e-4 + 1e-5 * np.abs(offline).max())


def test_per_token_z_of_train_texts_centres_on_plus_and_minus_one(reduced) -> None:
    from amygdala_vllm.readout.render import build_view

    llm, _, texts, examples, out = reduced
    train = [ex for ex in examples if ex.split == "train"]
    ids = sorted({ex.text_id for ex in train})
    scores, man = _score(llm, out["grand-mean"], [texts[i] for i in ids])
    by_id = dict(zip(ids, scores))
    layer = man.layers[-1]
    for e, emo in enumerate(EMOTIONS):
        for polarity, want in (("positive", 1.0), ("negative", -1.0)):
            z = []
            for ex in train:
                if ex.emotion == emo and ex.polarity == polarity:
                    view = build_view(by_id[ex.text_id], man, layers=[layer], concepts=[emo])
                    z.append(view.z[man.skip_first_tokens:, 0, 0])
            centre = float(np.mean(np.concatenate(z)))
            assert abs(centre - want) < 0.02, (emo, polarity, centre)
