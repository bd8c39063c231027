"""Helpers for ``scripts/bench.py``: corpus building, work counting, and the measured jobs.

Pure-python parts (:mod:`.corpus`, :mod:`.counting`) import neither torch nor
vLLM so ``tests/test_bench_smoke.py`` can run them in seconds. Each job module
(:mod:`.job_vllm`, :mod:`.job_hf`, :mod:`.job_reduce`) runs in its own
subprocess (``python -m bench.job_x JOB.json``): vLLM keeps process-global
state, and peak RSS must be read per process.
"""
