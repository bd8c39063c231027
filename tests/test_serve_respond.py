"""serve/respond: which choice of a response a vLLM request id is."""

from __future__ import annotations

from amygdala_vllm.serve.respond import choice_index


def test_choice_index_follows_vllm_request_ids():
    assert choice_index("chatcmpl-abc-1a2b3c4d", completions=False, n=1) == 0
    assert choice_index("2_chatcmpl-abc-1a2b3c4d", completions=False, n=3) == 2
    assert choice_index("cmpl-abc-0-1a2b3c4d", completions=True, n=1) == 0
    assert choice_index("1_cmpl-abc-2-1a2b3c4d", completions=True, n=2) == 5
    assert choice_index("3_x-1a2b3c4d", completions=False, n=1) == 0  # a leading digit_ is a child only when n > 1
