"""The worker's message inside vLLM's wrappings (multiprocess executors lose the exception type)."""

from __future__ import annotations

from amygdala_vllm.vllm_ext.rpc import worker_message


def test_message_inside_the_multiprocess_executor_wrapping() -> None:
    # vLLM 0.32: multiproc_executor.py wraps the worker's str(exc); core.py prefixes the utility call
    inner = RuntimeError("Worker failed with error 'layers [7] out of range for a 4-layer decoder', "
                         "please check the stack trace above for the root cause")
    assert worker_message(inner) == "layers [7] out of range for a 4-layer decoder"
    outer = Exception(f"Call to collective_rpc method failed: {inner}")
    assert worker_message(outer) == "layers [7] out of range for a 4-layer decoder"


def test_message_of_an_unwrapped_exception() -> None:
    assert worker_message(ValueError("plain")) == "plain"
    assert worker_message(Exception("Call to collective_rpc method failed: boom")) == "boom"
    assert worker_message(RuntimeError()) == "RuntimeError"
