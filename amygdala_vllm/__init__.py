"""amygdala-vllm: emotion readout vectors captured inside vLLM.

The package root stays import-light (no vLLM, no torch): stages are imported
from their modules, e.g. ``amygdala_vllm.reduce``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
