"""The only code that runs inside vLLM or touches its internals.

- :mod:`.probes`: every lookup of a vLLM-global internal, in one place, with the
  supported version range; a failed probe raises IncompatibleVLLMError.
- :mod:`.runners`: one view per supported model runner (V1 today) behind the
  ``RunnerView`` interface; the only code that reads a runner's internals.
- :mod:`.layers`: find the decoder layers of any (wrapped) decoder model.
- :mod:`.pooling`: per-request pooled accumulation of residual rows (plain torch).
- :mod:`.score_store`: per-token scores held per request until drained (readout and serving).
- :mod:`.rpc`: calls into the workers and the one codec of their replies.
- :mod:`.worker`: the worker extension mixed into vLLM's worker; called by name.
- :mod:`.serve_worker`: the serving worker extension; :mod:`.serve_endpoint`: the
  vLLM server pieces the serving endpoint plugin (``serve/endpoint.py``) uses.
- :mod:`.engine`: builds ``vllm.LLM`` with the settings capture needs and drives it.

Nothing here is imported by ``amygdala_vllm`` at import time; vLLM loads
``amygdala_vllm.vllm_ext.worker.AmygdalaWorkerExtension`` by qualified name.
Nothing here imports the stages (``serve/``, ...): they sit above this layer.
"""

WORKER_EXTENSION = "amygdala_vllm.vllm_ext.worker.AmygdalaWorkerExtension"
SERVE_WORKER_EXTENSION = "amygdala_vllm.vllm_ext.serve_worker.AmygdalaServeExtension"

__all__ = ["WORKER_EXTENSION", "SERVE_WORKER_EXTENSION"]
