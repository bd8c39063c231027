"""serve/broker: waiting requests share one drain round trip to the workers; discards ride along."""

from __future__ import annotations

import asyncio

import numpy as np

from amygdala_vllm.serve.broker import ScoreBroker
from amygdala_vllm.vllm_ext.rpc import RequestScores


def test_broker_batches_waiting_requests_into_one_drain_and_forwards_discards():
    calls = []

    async def drain(tags, discard):
        calls.append((list(tags), list(discard)))
        await asyncio.sleep(0.01)
        return [RequestScores(tag=t, req_id=f"r-{t}", prompt_len=1, positions=np.array([0]), token_ids=np.array([1]),
                              scores=np.zeros((1, 1, 1), np.float32)) for t in tags]

    async def main():
        broker = ScoreBroker(drain, interval=0.01)
        for t in "abcd":
            broker.register(t, streaming=False)
        got = await asyncio.gather(*(broker.final(t) for t in "abcd"))
        broker.discard("e")
        await asyncio.sleep(0.05)
        return broker, got

    broker, got = asyncio.run(main())
    assert calls[0] == (["a", "b", "c", "d"], [])  # four finals, one round trip
    assert [g[0].tag for g in got] == list("abcd")
    assert calls[-1] == ([], ["e"]) and broker.drains == len(calls) == 2
