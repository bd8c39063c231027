"""``amygdala-vllm pairs`` end to end through typer's CliRunner."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amygdala_vllm.cli import app
from amygdala_vllm.dataset import load_dataset
from amygdala_vllm.formats import DATASET_FILE, EXAMPLES_FILE, TEXTS_FILE
from amygdala_vllm import dataset as dataset_files  # writes a dataset dir's three files
from amygdala_vllm.pairs.sources import parse_jsonl_nodes, sample_graph_bytes
from pairs_runs import SMALL, jsonl, pairs, runner, write_graph

REPO = Path(__file__).resolve().parents[1]
FILES = (DATASET_FILE, TEXTS_FILE, EXAMPLES_FILE)


def read(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in FILES}


def test_small_graph_by_hand(tmp_path: Path) -> None:
    graph = write_graph(tmp_path / "g.jsonl", SMALL)
    out = tmp_path / "ds"
    result = pairs("--memory-file", graph, "--output-dir", out, "--min-content-chars", 10, "--heldout-fraction", 0)
    assert result.exit_code == 0, result.output
    texts = jsonl(out / TEXTS_FILE)
    assert [(t["id"], t["key"]) for t in texts] == [(0, "a"), (1, "b"), (2, "c"), (3, "e")]  # only used texts
    assert texts[0]["text"] == "A" * 30  # tag line gone
    joy = [(e["polarity"], texts[e["text_id"]]["key"], e["score"]) for e in jsonl(out / EXAMPLES_FILE) if e["emotion"] == "joy"]
    assert joy == [("positive", "a", 9), ("positive", "b", 10), ("negative", "c", None), ("negative", "e", None)]
    calm = [(e["polarity"], texts[e["text_id"]]["key"]) for e in jsonl(out / EXAMPLES_FILE) if e["emotion"] == "calm"]
    assert calm == [("positive", "b"), ("negative", "e")]  # e (58) is nearest to b (60); a is tagged joy only
    info = json.loads((out / DATASET_FILE).read_text())
    assert info["stats"] == {"nodes_read": 9, "nodes_skipped": {"duplicate_text": 1, "too_short": 1}, "texts": 4}
    assert info["emotions"]["joy"] == {"positive": 2, "negative": 2, "heldout_positive": 0, "heldout_negative": 0}
    assert "joy" in result.output and "too_short 1" in result.output
    load_dataset(out)  # the downstream loader accepts it


def test_min_content_chars_counts_the_text_without_tags(tmp_path: Path) -> None:
    graph = write_graph(tmp_path / "g.jsonl", SMALL)
    out = tmp_path / "ds"
    assert pairs("--memory-file", graph, "--output-dir", out, "--min-content-chars", 31, "--heldout-fraction", 0).exit_code == 0
    info = json.loads((out / DATASET_FILE).read_text())
    # a, h and g (30 chars of text, 36+ with tags), c (28) and i are now too short; f (45) is not.
    assert info["stats"]["nodes_skipped"] == {"too_short": 5}


def test_default_run_uses_the_bundled_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["pairs"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(tmp_path / "runs" / "dataset")
    assert ds.info.source["kind"] == "sample"
    assert ds.info.options["min_positive_score"] == 8 and ds.info.options["max_examples_per_emotion"] == 500
    assert len(ds.info.emotions) >= 12
    assert sum(c.positive >= 20 for c in ds.info.emotions.values()) >= 12
    assert ds.info.stats.nodes_skipped["malformed_tags"] >= 5 and ds.info.stats.nodes_skipped["too_short"] >= 5
    for name in ("malformed_tags", "too_short", "warmth", "held-out"):
        assert name in result.output
    # One node, one side: every text is train for every emotion or held out for every emotion.
    sides: dict[int, set[str]] = {}
    for e in ds.examples:
        sides.setdefault(e.text_id, set()).add(e.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {e.split for e in ds.examples} == {"train", "heldout"}
    # No text carries a tag line.
    assert not any(t.text.rstrip().endswith(("warmth:9", "joy:9", "calm:9")) for t in ds.texts)


def test_rerun_is_byte_identical_and_replaces_a_dataset(tmp_path: Path) -> None:
    assert pairs("--output-dir", tmp_path / "one").exit_code == 0
    assert pairs("--output-dir", tmp_path / "two").exit_code == 0
    assert read(tmp_path / "one") == read(tmp_path / "two")
    before = read(tmp_path / "one")
    assert pairs("--output-dir", tmp_path / "one").exit_code == 0  # replaces its own dataset
    assert read(tmp_path / "one") == before
    assert pairs("--output-dir", tmp_path / "one", "--seed", 1).exit_code == 0
    assert read(tmp_path / "one")[EXAMPLES_FILE] != before[EXAMPLES_FILE]  # the seed matters
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no staging leftovers


def test_foreign_dir_is_refused_unless_force(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = pairs("--output-dir", out)
    assert result.exit_code == 1
    assert "StoreError" in result.output and "--force" in result.output
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert pairs("--output-dir", out, "--force").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*FILES, "usage.json"))


def test_empty_dir_is_fine_and_a_file_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert pairs("--output-dir", tmp_path / "empty").exit_code == 0
    (tmp_path / "file").write_text("x")
    result = pairs("--output-dir", tmp_path / "file", "--force")
    assert result.exit_code == 1 and "not a directory" in result.output
    assert (tmp_path / "file").read_text() == "x"


def test_crash_mid_write_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def exploding(records):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived between texts.jsonl and examples.jsonl
        return b"".join(json.dumps(r.id).encode() + b"\n" for r in records)

    monkeypatch.setattr(dataset_files, "encode_jsonl", exploding)
    result = pairs("--output-dir", tmp_path / "ds")
    assert result.exit_code == 130
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_write_keeps_the_old_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ds"
    assert pairs("--output-dir", out).exit_code == 0
    before = read(out)

    def boom(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dataset_files, "encode_json", boom)
    result = pairs("--output-dir", out, "--seed", 7)
    assert isinstance(result.exception, RuntimeError)
    assert read(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b'{"key": "a", "content": "ok ok ok ok ok ok ok ok\\njoy:9"}\nnot json\n', ["--strict"], "g.jsonl:2: not valid JSON"),
        (b'{"key": "a"}\n', ["--strict"], "g.jsonl:1: no string 'content'"),
        (b'{"key": "a", "content": "caf\xe9"}\n', [], "g.jsonl:1: not UTF-8"),
        (b"\n", [], "yielded no nodes"),
        (b'{"key": "a", "content": "tiny\\njoy:9"}\n', [], "no usable nodes in the source (too_short: 1)"),
        (b'{"key": "a", "content": "a text long enough to pass the length filter\\njoy:7"}\n', [], "no emotion qualifies"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, content: bytes, extra: list[str], message: str) -> None:
    (tmp_path / "g.jsonl").write_bytes(content)
    os.chdir(tmp_path)
    try:
        result = pairs("--memory-file", "g.jsonl", "--output-dir", "out", *extra)
    finally:
        os.chdir(REPO)
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_skipped_lines_are_counted_without_strict(tmp_path: Path) -> None:
    graph = tmp_path / "g.jsonl"
    graph.write_bytes(sample_graph_bytes() + b"not json\n{\"key\": \"x\"}\n")
    result = pairs("--memory-file", graph, "--output-dir", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ds" / DATASET_FILE).read_text())
    assert info["stats"]["nodes_skipped"]["invalid_json"] == 1
    assert info["stats"]["nodes_skipped"]["missing_content"] == 1


def test_two_sources_are_refused(tmp_path: Path) -> None:
    result = pairs("--memory-file", tmp_path / "g.jsonl", "--stories-dir", tmp_path, "--output-dir", tmp_path / "ds")
    assert result.exit_code == 1 and "UsageError" in result.output
    assert not (tmp_path / "ds").exists()


def test_emotions_file(tmp_path: Path) -> None:
    (tmp_path / "none.txt").write_text("# nothing here is tagged\nschadenfreude\nennui\n")
    result = pairs("--emotions", tmp_path / "none.txt", "--output-dir", tmp_path / "ds")
    assert result.exit_code == 1
    assert "present: " in result.output and "warmth" in result.output
    assert not (tmp_path / "ds").exists()
    (tmp_path / "some.txt").write_text("Warmth\nself-doubt  # the inner critic\nennui\n")
    result = pairs("--emotions", tmp_path / "some.txt", "--top-emotions", 2, "--output-dir", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ds" / DATASET_FILE).read_text())
    chosen = set(info["emotions"])
    assert {"warmth", "self_doubt"} <= chosen and len(chosen) <= 4  # curated union top 2
    assert info["options"]["emotions"] == ["warmth", "self_doubt", "ennui"]
    assert "ennui (not tagged in the graph)" in result.output


def test_caps_and_ratio_flags(tmp_path: Path) -> None:
    args = ["--max-examples-per-emotion", 5, "--negatives-per-positive", 2, "--output-dir", tmp_path / "ds"]
    assert pairs(*args).exit_code == 0
    info = json.loads((tmp_path / "ds" / DATASET_FILE).read_text())
    for counts in info["emotions"].values():
        assert counts["positive"] + counts["heldout_positive"] == 5
        assert counts["negative"] == 2 * counts["positive"]
        assert counts["heldout_negative"] == 2 * counts["heldout_positive"]


def test_stories_dir_source(tmp_path: Path) -> None:
    stories = tmp_path / "stories"
    stories.mkdir()
    for i in range(6):
        tag = "\n\nlonging:9" if i % 2 else ""
        (stories / f"s{i}.md").write_text(f"Story number {i}: the lighthouse keeper waited all winter." + tag)
    result = pairs("--stories-dir", stories, "--output-dir", tmp_path / "ds", "--heldout-fraction", 0)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ds" / DATASET_FILE).read_text())
    assert info["emotions"] == {"longing": {"positive": 3, "negative": 3, "heldout_positive": 0, "heldout_negative": 0}}
    assert info["source"] == {"kind": "stories", "path": str(stories), "files": 6}


def sample_nodes(n: int) -> list[dict]:  # type: ignore[type-arg]
    return [
        {"key": x.key, "content": x.content, "type": x.type, "category": x.category}
        for x in parse_jsonl_nodes(sample_graph_bytes(), "sample")[0][:n]
    ]


def stdio_command(graph: Path, *extra: str) -> str:
    from mcp_fixture_server import stdio_argv

    return shlex.join(stdio_argv(graph, *extra))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_upstream_server_gives_the_same_dataset_as_the_jsonl_export(tmp_path: Path, transport: str) -> None:
    """The upstream replica (text listing, render with links) over stdio, and over Streamable HTTP
    behind a bearer token that every request must carry (given through AMYGDALA_MCP_HEADERS)."""
    from mcp_fixture_server import serve_memory_graph

    nodes = sample_nodes(60)
    graph = write_graph(tmp_path / "export.jsonl", nodes)
    assert pairs("--memory-file", graph, "--output-dir", tmp_path / "from-file").exit_code == 0
    served = write_graph(tmp_path / "served.jsonl", list(reversed(nodes)))
    out = tmp_path / "from-mcp"
    if transport == "stdio":
        result = pairs("--memory-mcp-command", stdio_command(served), "--output-dir", out, "--mcp-preset", "upstream")
    else:
        seen: list[str] = []
        with serve_memory_graph(list(reversed(nodes)), header=("Authorization", "Bearer s3cret"), seen=seen) as url:
            result = runner.invoke(app, ["pairs", "--memory-mcp-url", url, "--output-dir", str(out)],
                                   env={"AMYGDALA_MCP_HEADERS": "Authorization: Bearer s3cret"})
        assert len(seen) > len(nodes)  # every request reached the server with the token (else: 401)
    assert result.exit_code == 0, result.output
    assert "60/60" in result.output  # the fetch progress bar
    a, b = read(tmp_path / "from-file"), read(out)
    assert a[TEXTS_FILE] == b[TEXTS_FILE]
    assert a[EXAMPLES_FILE] == b[EXAMPLES_FILE]
    source = json.loads(b[DATASET_FILE])["source"]
    assert (source["kind"], source["transport"], source["mapping"]["list_format"]) == ("mcp", transport, "text")
    assert b"s3cret" not in b[DATASET_FILE]


def test_json_listing_server_gives_the_same_dataset(tmp_path: Path) -> None:
    """A JSON-listing server mapped by a TOML file and flags: cursor paging, full text from the fetch tool."""
    from mcp_fixture_server import serve_memory_graph

    nodes = sample_nodes(60)
    graph = write_graph(tmp_path / "export.jsonl", nodes)
    assert pairs("--memory-file", graph, "--output-dir", tmp_path / "from-file").exit_code == 0
    cfg = tmp_path / "json-server.toml"
    cfg.write_text('list_format = "json"\nlist_args = {}\npaging = "cursor"\nnext_cursor_path = "next_cursor"\n')
    with serve_memory_graph(nodes, "json", page_size=25) as url:
        result = pairs("--memory-mcp-url", url, "--output-dir", tmp_path / "from-mcp", "--mcp-config", cfg,
                       "--mcp-items-path", "nodes")
    assert result.exit_code == 0, result.output
    a, b = read(tmp_path / "from-file"), read(tmp_path / "from-mcp")
    assert a[TEXTS_FILE] == b[TEXTS_FILE] and a[EXAMPLES_FILE] == b[EXAMPLES_FILE]


JUNK = f"{shlex.quote(sys.executable)} -c 'import sys; print(\"starting memory server...\"); sys.stdin.read()'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory-mcp-url", "http://127.0.0.1:9/mcp", "--mcp-header", "Bearer s3cret"],
         "UsageError: header 1 of --mcp-header has no ':'"),
        (["--memory-mcp-command", "no-such-memory-server --stdio"],
         "MCPTransportError: cannot start MCP server command [no-such-memory-server --stdio]"),
        (["--memory-mcp-command", f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(\"no graph\")'"],
         "closed the connection during initialize (the server process ended or stopped answering; its stderr: "
         "'no graph')"),
        (["--memory-mcp-command", JUNK], "wrote something that is not JSON-RPC to stdout during initialize: "
                                         "'starting memory server...' (a stdio server must log to stderr)"),
        (["--mcp-list-tool", "list_everything"], "has no tool 'list_everything'; available: memory_links, "
                                                 "memory_query, memory_render, memory_search"),
        (["--mcp-list-args", '{"query": "all | limit:0"}'], "the server listed no nodes"),
        (["--mcp-list-args", "{}"], "failed: Error executing tool memory_query: query is required"),
        (["--strict"], "MCPProtocolError: MCP tool 'memory_render' on MCP server http"),
    ],
    ids=["header-without-colon", "not-found", "exits-at-once", "junk-stdout", "missing-tool", "empty-listing",
         "query-missing", "refused-fetch-strict"],
)
def test_bad_mcp_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    """Stdio failures with real child processes; the rest against the upstream replica over HTTP."""
    from mcp_fixture_server import serve_memory_graph

    nodes = [{"key": f"k{i}", "content": f"Node {i} says enough.\njoy:9"} for i in range(3)]
    with serve_memory_graph(nodes, refuse=frozenset({"k1"})) as url:
        source = [] if any(a.startswith("--memory-mcp") for a in args) else ["--memory-mcp-url", url]
        result = pairs(*source, *args, "--output-dir", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "s3cret" not in result.output
    assert not (tmp_path / "out").exists()


def test_refused_fetch_is_counted_as_skipped(tmp_path: Path) -> None:
    from mcp_fixture_server import serve_memory_graph

    nodes = [{"key": f"k{i}", "content": f"Node {i} says enough." + ("\njoy:9" if i % 2 else "")} for i in range(6)]
    with serve_memory_graph(nodes, refuse=frozenset({"k1"})) as url:
        result = pairs("--memory-mcp-url", url, "--output-dir", tmp_path / "out", "--min-content-chars", 5,
                       "--heldout-fraction", 0)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / DATASET_FILE).read_text())
    assert info["stats"]["nodes_read"] == 6 and info["stats"]["nodes_skipped"] == {"mcp_fetch_error": 1}
    assert info["emotions"]["joy"]["positive"] == 2  # k3 and k5; k1 was refused


def test_ctrl_c_stops_the_stdio_server(tmp_path: Path) -> None:
    """SIGINT while the listing is in flight: exit 130, nothing written, the child process gone."""
    import psutil

    graph = write_graph(tmp_path / "g.jsonl", sample_nodes(5))
    pid_file = tmp_path / "server.pid"
    command = stdio_command(graph, "--pid-file", str(pid_file), "--list-delay", "60")
    proc = subprocess.Popen([sys.executable, "-m", "amygdala_vllm", "pairs", "--memory-mcp-command", command,
                             "--output-dir", str(tmp_path / "out")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        server = psutil.Process(int(pid_file.read_text()))
        time.sleep(1.0)  # handshake done, memory_query in flight
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "out").exists()


def test_help_lists_every_flag() -> None:
    result = runner.invoke(app, ["pairs", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in [
        "--memory-mcp-url", "--memory-file", "--stories-dir", "--output-dir", "--min-positive-score",
        "--max-negative-mentions", "--min-content-chars", "--max-examples-per-emotion", "--mcp-preset",
        "--mcp-config", "--mcp-list-tool", "--mcp-fetch-tool", "--mcp-items-path", "--mcp-key-field",
        "--mcp-content-field", "--mcp-paging", "--mcp-timeout", "--emotions", "--top-emotions",
        "--memory-mcp-command", "--mcp-transport", "--mcp-header", "--mcp-concurrency", "--mcp-list-args",
        "--mcp-list-format", "--mcp-links-pattern",
        "--min-examples", "--heldout-fraction", "--seed", "--max-negative-score", "--negatives-per-positive",
        "--strict", "--force",
    ]:
        assert flag in result.output, flag


def test_help_and_pairs_work_without_vllm(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['vllm'] = None\n"
        "from amygdala_vllm.cli import main\n"
        "sys.argv = ['amygdala-vllm'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'pairs imported torch'\n"
    )
    graph = write_graph(tmp_path / "g.jsonl", sample_nodes(20))
    mcp = ["--memory-mcp-command", stdio_command(graph)]
    for args in (["--help"], ["pairs", "--output-dir", str(tmp_path / "ds")],
                 ["pairs", *mcp, "--output-dir", str(tmp_path / "mcp")]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ds" / DATASET_FILE).is_file() and (tmp_path / "mcp" / DATASET_FILE).is_file()
