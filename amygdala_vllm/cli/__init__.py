"""The ``amygdala-vllm`` command line: one module per command.

Each stage lives in its own module; importing them registers the commands.
vLLM is imported only inside the commands that run it, so ``--help``,
``pairs`` and ``reduce`` work without vLLM installed.
"""

from __future__ import annotations

from ._app import app, main
from . import pairs_cmd, extract_cmd, reduce_cmd, validate_cmd, model_cmd  # noqa: F401,E402
from . import readout_cmd  # noqa: F401,E402
from . import serve_cmd  # noqa: F401,E402

__all__ = ["app", "main"]
