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


# ------------------------------------------------------------------ codec

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from amygdala_vllm.errors import FormatError  # noqa: E402
from amygdala_vllm.vllm_ext import rpc  # noqa: E402


def _scores_reply() -> rpc.ScoresReply:
    g = np.random.default_rng(0)
    reqs = [rpc.RequestScores(req_id=f"r{i}", tag=t, prompt_len=3 + i, positions=np.arange(n, dtype=np.int64),
                              token_ids=np.arange(10, 10 + n, dtype=np.int64),
                              scores=g.standard_normal((n, 2, 3)).astype(np.float32))
            for i, (t, n) in enumerate([("x", 4), ("", 0), ("y", 1)])]
    return rpc.ScoresReply(layers=[1, 3], requests=reqs)


def test_scores_reply_round_trip_is_exact() -> None:
    sent = _scores_reply()
    got = rpc.decode_scores(rpc.encode_scores(sent))
    assert got.layers == [1, 3] and [r.req_id for r in got.requests] == ["r0", "r1", "r2"]
    for a, b in zip(sent.requests, got.requests):
        assert (a.tag, a.prompt_len) == (b.tag, b.prompt_len)
        for name in ("positions", "token_ids", "scores"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            assert getattr(b, name).dtype == getattr(a, name).dtype
    empty = rpc.decode_scores(rpc.encode_scores(rpc.ScoresReply(layers=[0], requests=[])))
    assert empty.layers == [0] and empty.requests == []


def test_capture_reply_round_trip_is_exact() -> None:
    pooled = {m: np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32) for m in ("mean", "last")}
    sent = rpc.CaptureReply(layers=[0, 2, 5], req_ids=["a", "b"], num_tokens=np.array([5, 7]),
                            rows_seen=np.array([5, 7]), pooled=pooled)
    got = rpc.decode_capture(rpc.encode_capture(sent))
    assert got.layers == [0, 2, 5] and got.req_ids == ["a", "b"] and list(got.pooled) == ["mean", "last"]
    assert got.num_tokens.tolist() == [5, 7] and got.rows_seen.tolist() == [5, 7]
    for m in pooled:
        np.testing.assert_array_equal(got.pooled[m], pooled[m])


def test_malformed_replies_raise_format_error_naming_the_reply() -> None:
    good = rpc.encode_scores(_scores_reply())
    with pytest.raises(FormatError, match="a worker's scores reply is not a safetensors file"):
        rpc.decode_scores(b"\x01")
    with pytest.raises(FormatError, match="a worker's scores reply is malformed"):
        rpc.decode_scores(good[:-5])  # truncated data
    with pytest.raises(FormatError, match="a worker's capture reply is malformed"):
        rpc.decode_capture(good)  # another reply's metadata
    missing = rpc.pack({"r0.positions": np.arange(2)},
                       rpc._ScoresMeta(version=rpc.REPLY_VERSION, layers=[1], requests=[rpc._Scored("r0", "", 2)]))
    with pytest.raises(FormatError, match="no array 'r0.token_ids'"):
        rpc.decode_scores(missing)
    newer = rpc.pack({}, rpc._ScoresMeta(version=rpc.REPLY_VERSION + 1, layers=[], requests=[]))
    with pytest.raises(FormatError, match="reply version 2; this driver reads 1"):
        rpc.decode_scores(newer)


def test_empty_replies_of_non_reporting_ranks_are_skipped() -> None:
    assert rpc.replies([b"", b"abc", None, memoryview(b"d")]) == [b"abc", b"d"]
