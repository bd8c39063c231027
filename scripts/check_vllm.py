#!/usr/bin/env python
"""Check every vLLM internal amygdala-vllm declares against released vLLM wheels (never installs vLLM).

    python scripts/check_vllm.py 0.32.0 0.33.0 0.34.0      # downloads each wheel once (cached)
    python scripts/check_vllm.py --installed                # the vLLM beside this Python, from its files

The logic is ``amygdala_vllm/vllm_ext/version_check.py`` (table, wheel cache) and
``source_check.py`` (the ast checks); see docs/architecture.md, "The version check".
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not

from amygdala_vllm.vllm_ext.version_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
