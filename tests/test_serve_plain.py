"""The plain form (you run vLLM's server yourself, with our plugins named in VLLM_PLUGINS) without vectors.

The server must run as a normal vLLM server and answer a readout request with
HTTP 400 saying how to start it with vectors. It is started with ``--api-key``,
so the same server shows that ``/amygdala/*`` refuse a request without the key
exactly as vLLM's ``/v1/*`` do. One server (~60 s to start).
"""

from __future__ import annotations

import httpx
import pytest

from serve_fixture import vllm_server

pytestmark = pytest.mark.engine

API_KEY = "amygdala-test-key"


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory, tiny_llama_dir):
    with vllm_server(tiny_llama_dir, tmp_path_factory.mktemp("plain"), plain=True, max_model_len=256,
                     kv_cache_bytes=16 << 20, args=["--enforce-eager", "--api-key", API_KEY]) as base:
        yield base


def test_readout_without_vectors_is_400_saying_how_to_start(plain_server):
    from openai import BadRequestError, OpenAI

    client = OpenAI(base_url=plain_server + "/v1", api_key=API_KEY, max_retries=0)
    model = client.models.list().data[0].id
    with pytest.raises(BadRequestError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                       extra_body={"vllm_xargs": {"amygdala": "all"}})
    assert "amygdala-vllm serve MODEL --vectors" in str(info.value)
    assert info.value.body["param"] == "vllm_xargs.amygdala"
    plain = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert plain.choices[0].finish_reason is not None and "amygdala" not in plain.choices[0].model_dump()
    assert httpx.get(plain_server + "/amygdala/info", headers=_KEY).json()["readout"] is False


_KEY = {"Authorization": f"Bearer {API_KEY}"}


def test_amygdala_routes_follow_the_api_key_like_v1(plain_server):
    from openai import AuthenticationError, OpenAI

    with pytest.raises(AuthenticationError):  # the official client, a wrong key: vLLM's own 401
        OpenAI(base_url=plain_server + "/v1", api_key="wrong", max_retries=0).models.list()
    refused = httpx.get(plain_server + "/v1/models")
    assert refused.status_code == 401
    for path in ("/amygdala/info", "/amygdala/stats"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            got = httpx.get(plain_server + path, headers=headers)
            assert (got.status_code, got.json()) == (401, refused.json()), (path, headers)  # the same 401, same body
    assert httpx.get(plain_server + "/amygdala/info", headers=_KEY).status_code == 200
    stats = httpx.get(plain_server + "/amygdala/stats", headers=_KEY)  # no vectors here: a 400 saying so, not a 401
    assert stats.status_code == 400 and "without readout vectors" in stats.json()["error"]["message"]
    assert httpx.get(plain_server + "/health").status_code == 200  # unguarded, as in vLLM
