"""serve/launch: the plugins, environment and argv ``amygdala-vllm serve`` hands to vLLM's server."""

from __future__ import annotations

import json
from pathlib import Path

from amygdala_vllm.serve.launch import plugins_value, serve_argv, serve_env, serve_settings


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


def test_serve_leaves_the_runner_to_vllm():
    from amygdala_vllm.serve.launch import runner_env, serve_env

    assert runner_env({}) == {} and runner_env({"VLLM_USE_V2_MODEL_RUNNER": "1"}) == {}
    env = serve_env(Path("v.safetensors"), Path("v.manifest.json"), {"VLLM_USE_V2_MODEL_RUNNER": "0"})
    assert env["VLLM_USE_V2_MODEL_RUNNER"] == "0"  # the user's own choice reaches vLLM (0.32/0.33 have V1)
