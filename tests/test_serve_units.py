"""The serving pieces that need no server: options, choice mapping, score assembly, the drain broker, the launcher."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from amygdala_vllm.serve.assemble import ChoiceBuilder, SequenceScores
from amygdala_vllm.serve.broker import ScoreBroker
from amygdala_vllm.serve.launch import plugins_value, serve_argv, serve_env, serve_settings
from amygdala_vllm.serve.options import OptionError, parse_options, wants_readout
from amygdala_vllm.serve.respond import choice_index
from amygdala_vllm.vllm_ext.rpc import RequestScores

CONCEPTS, LAYERS = ["calm", "joy", "anger"], [1, 3]


def test_options_resolve_and_refuse_by_field():
    o = parse_options({"amygdala": ["joy", "joy", "calm"], "amygdala_layers": 3, "amygdala_raw": 1}, CONCEPTS, LAYERS)
    assert (o.concepts, o.layers, o.tokens, o.raw) == (["joy", "calm"], [3], True, True)
    assert parse_options({"amygdala": "all"}, CONCEPTS, LAYERS).concepts == CONCEPTS
    assert not wants_readout({"kv_transfer_params": 1}) and not wants_readout(None)
    for bad, field in [({"amygdala": []}, "amygdala"), ({"amygdala": "all", "amygdala_raw": True}, "amygdala_raw"),
                       ({"amygdala": "all", "amygdala_layers": ["1"]}, "amygdala_layers"),
                       ({"amygdala": "all", "amygdala_tag": "x"}, "amygdala_tag")]:
        with pytest.raises(OptionError) as info:
            parse_options(bad, CONCEPTS, LAYERS)
        assert info.value.field == field and str(info.value).startswith(f"vllm_xargs.{field}:")


def test_choice_index_follows_vllm_request_ids():
    assert choice_index("chatcmpl-abc-1a2b3c4d", completions=False, n=1) == 0
    assert choice_index("2_chatcmpl-abc-1a2b3c4d", completions=False, n=3) == 2
    assert choice_index("cmpl-abc-0-1a2b3c4d", completions=True, n=1) == 0
    assert choice_index("1_cmpl-abc-2-1a2b3c4d", completions=True, n=2) == 5
    assert choice_index("3_x-1a2b3c4d", completions=False, n=1) == 0  # a leading digit_ is a child only when n > 1


def _manifest():
    from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, Calibration, ReadoutManifest

    return ReadoutManifest(format=READOUT_FORMAT, concepts=CONCEPTS, layers=LAYERS, layer_semantics=LAYER_SEMANTICS,
                           hidden_size=8, model="m", model_fingerprint="f", pooling="mean", method="caa", counts={},
                           calibration={"joy": {"3": Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=2.0,
                                                                 raw_norm=1.0)}})


def test_recomputed_position_replaces_its_score_and_splits_prompt_from_completion():
    seq = SequenceScores()
    s = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    seq.add(np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8]), s, prompt_len=3)
    seq.add(np.array([2]), np.array([7]), np.full((1, 2, 3), 100.0, np.float32), prompt_len=3)  # preempted, recomputed
    opts = parse_options({"amygdala": ["joy"], "amygdala_layers": [3], "amygdala_raw": 1}, CONCEPTS, LAYERS)
    out = ChoiceBuilder(_manifest(), opts).build(seq, seq.positions(), pooled=True)
    assert out.prompt.positions == [0, 1, 2] and out.completion.positions == [3] and out.completion.token_ids == [8]
    assert [r[0][0] for r in out.prompt.raw] == [4.0, 10.0, 100.0]
    assert out.prompt.z[2][0][0] == pytest.approx((100.0 - 0.5) / 2.0)
    assert out.prompt.z[0] is None and out.prompt.raw[0] == [[4.0]]  # position 0 < skip_first_tokens: not scored
    assert out.calibrated == [[True]]
    assert list(out.pooled.z) == list(out.pooled.raw) == ["mean", "last", "max"]  # every registered mode, in order
    assert out.pooled.raw["mean"][0][0] == pytest.approx(np.mean([10.0, 100.0, 22.0]))  # positions >= 1
    assert out.pooled.raw["last"][0][0] == 22.0 and out.pooled.num_tokens == 4
    assert out.pooled.raw["max"][0][0] == 100.0  # the recomputed score, not the replaced 16.0
    assert out.pooled.z["max"][0][0] == pytest.approx((100.0 - 0.5) / 2.0)


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


def test_launcher_adds_plugins_and_taps(tmp_path):
    assert plugins_value(None) == "amygdala,amygdala_serve"
    assert plugins_value("mine,amygdala") == "mine,amygdala,amygdala_serve"
    env = serve_env(tmp_path / "v.safetensors", tmp_path / "v.manifest.json", {"VLLM_PLUGINS": "mine"})
    assert env["VLLM_PLUGINS"] == "mine,amygdala,amygdala_serve" and "VLLM_USE_V2_MODEL_RUNNER" not in env
    compiled = serve_settings("/m", ["--port", "1"], eager=False)
    assert compiled.compile and compiled.model == "/m"
    argv = serve_argv(compiled, ["--port", "1"], [3, 1])
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and argv[-2:] == ["--port", "1"]
    conf = json.loads(argv[argv.index("--additional-config") + 1])
    assert argv[argv.index("--load-format") + 1] == "amygdala" and conf["amygdala"]["tap_layers"] == [1, 3]
    assert "--enforce-eager" not in argv
    # eager: the user's own --enforce-eager, or --eager (which adds it once)
    users = serve_argv(serve_settings("/m", ["--enforce-eager"], eager=False), ["--enforce-eager"], [3, 1])
    ours = serve_argv(serve_settings("/m", [], eager=True), [], [3, 1])
    for eager in (users, ours):
        assert "--load-format" not in eager and eager.count("--enforce-eager") == 1


def test_serve_cli_refuses_wrong_vectors_in_one_line_before_vllm_starts(tmp_path, tiny_llama_dir):
    from amygdala_vllm.cli import app
    from test_readout_engine import write_vectors

    runner = CliRunner()
    (tmp_path / "a").mkdir()
    vec, _, _ = write_vectors(tmp_path / "a", tiny_llama_dir, hidden=64)
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec), "--port", "1"])
    assert r.exit_code == 1 and "hidden size 64" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "b").mkdir()
    vec, _, _ = write_vectors(tmp_path / "b", tiny_llama_dir, model_fingerprint="0123456789abcdef")
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec)])
    assert r.exit_code == 1 and "fingerprint" in r.output
    (tmp_path / "c").mkdir()
    vec, _, _ = write_vectors(tmp_path / "c", tiny_llama_dir)
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec), "--eager", "--print-command",
                            "--max-model-len", "512"])
    assert r.exit_code == 0, r.output
    assert "VLLM_PLUGINS=amygdala,amygdala_serve" in r.output and "--enforce-eager" in r.output
    assert "VLLM_USE_V2_MODEL_RUNNER" not in r.output and f"VLLM_READOUT_VECTORS={vec.resolve()}" in r.output
    assert "--worker-extension-cls amygdala_vllm.vllm_ext.serve_worker.AmygdalaServeExtension" in r.output
    assert "--max-model-len 512" in r.output


def test_per_token_z_uses_the_per_token_calibration_and_pooled_z_the_pooled_one():
    import msgspec

    man = _manifest()
    cal = man.calibration["joy"]["3"]
    man.calibration["joy"]["3"] = msgspec.structs.replace(cal, token_pos_mean=3.0, token_neg_mean=-1.0)
    seq = SequenceScores()
    seq.add(np.array([0, 1, 2]), np.array([5, 6, 7]), np.full((3, 2, 3), 5.0, np.float32), prompt_len=3)
    opts = parse_options({"amygdala": ["joy"], "amygdala_layers": [3]}, CONCEPTS, LAYERS)
    out = ChoiceBuilder(man, opts).build(seq, seq.positions(), pooled=True)
    assert out.prompt.z[0] is None  # position 0 < skip_first_tokens: not scored
    assert out.prompt.z[1][0][0] == pytest.approx((5.0 - 1.0) / 2.0)  # token midpoint 1, half-gap 2
    assert out.pooled.z["mean"][0][0] == pytest.approx((5.0 - 0.5) / 2.0)  # pooled midpoint 0.5, std 2
    assert out.pooled.raw is None  # no amygdala_raw


def test_serve_leaves_the_runner_to_vllm():
    from amygdala_vllm.serve.launch import runner_env, serve_env

    assert runner_env({}) == {} and runner_env({"VLLM_USE_V2_MODEL_RUNNER": "1"}) == {}
    env = serve_env(Path("v.safetensors"), Path("v.manifest.json"), {"VLLM_USE_V2_MODEL_RUNNER": "0"})
    assert env["VLLM_USE_V2_MODEL_RUNNER"] == "0"  # the user's own choice reaches vLLM (0.32/0.33 have V1)


def test_serve_cli_refuses_a_feature_the_views_cannot_read_in_one_line(tmp_path, tiny_llama_dir):
    from amygdala_vllm.cli import app
    from test_readout_engine import write_vectors

    vec, _, _ = write_vectors(tmp_path, tiny_llama_dir)
    for flags, flag in ((["--enable-dbo"], "--enable-dbo"),
                        (["-tp", "2", "--data-parallel-size=2", "-ep"], "--enable-expert-parallel"),
                        (["--enable-batch-sharded-sampling"], "--enable-batch-sharded-sampling")):
        r = CliRunner().invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec), "--print-command", *flags])
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
        assert r.output.startswith("IncompatibleVLLMError: ") and f"run without {flag}" in r.output


def test_unscored_positions_have_null_z_on_the_wire_and_completions_keep_theirs():
    """The JSON a client gets (vllm_ext/serve_endpoint.py encodes ChoiceScores with msgspec): z null before skip."""
    import msgspec

    seq = SequenceScores()
    seq.add(np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8]), np.full((4, 2, 3), 2.0, np.float32), prompt_len=2)
    opts = parse_options({"amygdala": ["joy"], "amygdala_layers": [3], "amygdala_raw": 1}, CONCEPTS, LAYERS)
    out = msgspec.json.decode(msgspec.json.encode(ChoiceBuilder(_manifest(), opts).build(seq, seq.positions(),
                                                                                       pooled=False)))
    assert out["prompt"]["z"] == [None, [[0.75]]] and out["prompt"]["raw"] == [[[2.0]], [[2.0]]]
    assert out["completion"]["z"] == [[[0.75]], [[0.75]]]
