"""Serving: per-request emotion readout on vLLM's own OpenAI server (``amygdala-vllm serve``).

Nothing here imports vLLM; the pieces that run inside vLLM's processes are
``vllm_ext/serve_endpoint.py`` (API server routes), ``vllm_ext/serve_worker.py``
and ``vllm_ext/serve_scores.py`` (worker side).

- :mod:`.options`: the ``vllm_xargs`` keys a client sends, validated.
- :mod:`.schema`: the ``amygdala`` object of each response choice (msgspec).
- :mod:`.assemble`: worker scores -> that object (selection, calibration, pooling).
- :mod:`.broker`: batched drains (one worker round trip for all waiting requests).
- :mod:`.respond`: splicing scores into vLLM's JSON responses and SSE streams.
- :mod:`.launch`: the server's command line and environment, checked up front.
"""
