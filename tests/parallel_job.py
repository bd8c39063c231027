"""Run capture and readout under tensor and pipeline parallelism, one engine after the other.

Run as a script (``python parallel_job.py JOB.json``) by ``test_parallel.py``: a
multi-rank engine starts worker processes, which needs the ``__main__`` guard
and a process of its own. Writes ``OUT_tpT_ppP.safetensors`` per configuration
with the pooled ``mean``/``last`` [N, L, H], the per-token readout ``scores`` (through ``Readout`` on the running engine)
concatenated [sum T, L, E] and the seconds each configuration took.
"""

from __future__ import annotations

import json
import sys
import time


def main(job_file: str) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from amygdala_vllm.readout.scorer import Readout
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.vllm_ext.engine import CaptureSession, open_engine

    job = json.loads(open(job_file, encoding="utf-8").read())
    for tp, pp in job["configs"]:
        t0 = time.perf_counter()
        llm = open_engine(EngineSettings(model=job["model"], dtype="fp32", max_model_len=512, kv_cache_gb=0.0625,
                                         batch_size=16, tensor_parallel_size=tp, pipeline_parallel_size=pp))
        started = time.perf_counter() - t0
        capture = CaptureSession(llm, job["layers"], 1)
        pooled = capture.run(job["prompts"])
        capture.close()
        # The driver's Readout on an engine that is already running: its worker processes started
        # before the VLLM_READOUT_* variables were set, so this also checks the paths reach them.
        with Readout(job["vectors"], job["manifest"], engine=EngineSettings(dtype="fp32"), llm=llm) as readout:
            scores = [s.scores for s in readout.score_token_ids(job["prompts"])]
        save_file({"mean": np.stack([p.mean for p in pooled]), "last": np.stack([p.last for p in pooled]),
                   "scores": np.concatenate(scores), "seconds": np.array([started, time.perf_counter() - t0])},
                  f"{job['out']}_tp{tp}_pp{pp}.safetensors")
        llm.llm_engine.engine_core.shutdown()  # free the worker processes before the next engine starts
        del llm


if __name__ == "__main__":
    main(sys.argv[1])
