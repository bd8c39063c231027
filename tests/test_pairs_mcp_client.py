"""The MCP client on the official SDK: every transport against the SDK's real servers, and each
failure shape a deployed server can show (real sockets, real child processes) as one clear line."""

from __future__ import annotations

import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import psutil
import pytest
from mcp.server.mcpserver import MCPServer

from amygdala_vllm.errors import MCPError, MCPProtocolError, MCPTransportError
from amygdala_vllm.pairs.mcp.client import MCPClient
from amygdala_vllm.pairs.mcp.results import result_json, result_text
from amygdala_vllm.pairs.mcp.target import ServerTarget, make_target
from mcp_fixture_server import build_server, serve_asgi, serve_memory_graph, stdio_argv
from pairs_runs import write_graph

NODES = [
    {"key": f"journal/2026-03-{i:02d}#evening", "content": f"Evening {i}: a long enough body.\nwarmth:{i}",
     "type": "daily", "category": "core" if i % 2 else None}
    for i in range(7)
]
KNOWN_VERSIONS = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}


def http(url: str, **kw: object) -> ServerTarget:
    return make_target(url=url, command=None, environ={}, timeout=kw.pop("timeout", 5), **kw)  # type: ignore[arg-type]


def stdio(*argv: str, timeout: float = 30) -> ServerTarget:
    return make_target(url=None, command=shlex.join(argv), environ={}, timeout=timeout)


def stdio_server(tmp_path: Path, *extra: str, style: str = "json", timeout: float = 30) -> ServerTarget:
    graph = write_graph(tmp_path / "graph.jsonl", NODES)
    return stdio(*stdio_argv(graph, "--style", style, *extra), timeout=timeout)


def wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, "stdio server never started"
        time.sleep(0.02)
    return int(path.read_text())


def gone(pid: int) -> bool:
    """The process is no longer running (exited; a zombie awaiting its reaper counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def live_children() -> list[psutil.Process]:
    """Child processes of this test process that still run (the stdio server must not be one)."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


# -- the same session over every transport ---------------------------------------------------


@pytest.fixture(params=["streamable-sse", "streamable-json", "legacy-sse", "stdio"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerTarget]:
    if request.param == "stdio":
        yield stdio_server(tmp_path)
        return
    options = {"streamable-sse": {}, "streamable-json": {"json_response": True}, "legacy-sse": {"transport": "sse"}}
    with serve_memory_graph(NODES, "json", **options[request.param]) as url:  # type: ignore[arg-type]
        yield http(url)


def test_session_on_every_transport(target: ServerTarget) -> None:
    with MCPClient(target) as client:
        assert client.protocol_version in KNOWN_VERSIONS and client.server_name == "fixture-memory"
        assert {"memory_query", "memory_render", "memory_pages"} <= {t["name"] for t in client.list_tools()}
        client.require_tools(["memory_query", "memory_render"])
        text = client.call_tool("memory_render", {"key": NODES[1]["key"]})["content"][0]["text"]
        assert text.startswith(NODES[1]["content"] + "\n\nLinks:\n- -> " + NODES[0]["key"])
        results = client.call_many("memory_render", [{"key": n["key"]} for n in NODES] + [{"key": "nope"}])
    assert [r.get("isError", False) for r in results] == [False] * 7 + [True]
    assert [r["content"][0]["text"].split("\n")[0] for r in results[:7]] == [n["content"].split("\n")[0] for n in NODES]


def test_stdio_child_is_stopped_when_done(tmp_path: Path) -> None:
    with MCPClient(stdio_server(tmp_path, "--pid-file", str(tmp_path / "pid"))) as client:
        pid = wait_for_pid(tmp_path / "pid")
        assert psutil.Process(pid).is_running() and client.list_tools()
    assert gone(pid)
    assert not live_children()


# -- tool-level answers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_url() -> Iterator[str]:
    with serve_memory_graph(NODES, "json", json_response=True) as url:
        yield url


def test_missing_tool_lists_what_exists(json_url: str) -> None:
    with MCPClient(http(json_url)) as client:
        with pytest.raises(MCPProtocolError, match=r"no tool 'read_graph'; available: journal_tail, memory_pages, "
                                                   r"memory_query, memory_render, memory_search \(choose"):
            client.require_tools(["memory_query", "read_graph"])


def test_cursor_paging_by_hand(json_url: str) -> None:
    keys, cursor, pages = [], None, 0
    with MCPClient(http(json_url)) as client:
        while True:
            payload = result_json(client.call_tool("memory_query", {"cursor": cursor} if cursor else {}))[0]
            keys += [n["key"] for n in payload["nodes"]]
            pages += 1
            cursor = payload["next_cursor"]
            if cursor is None:
                break
    assert pages == 3 and keys == [n["key"] for n in NODES]


def test_is_error_result_carries_server_message(json_url: str) -> None:
    with MCPClient(http(json_url)) as client:
        with pytest.raises(MCPProtocolError, match=r"MCP tool 'memory_render' on MCP server .* failed: .*no node "
                                                   r"with key 'nope'"):
            client.call_tool("memory_render", {"key": "nope"})


def _counting_server(in_flight: list[int], peak: list[int]) -> MCPServer:
    server = MCPServer("counting", log_level="WARNING")

    @server.tool()
    async def slow(i: int) -> str:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await anyio.sleep(0.3 if i % 2 else 0.02)  # finish out of order
        in_flight[0] -= 1
        return f"answer {i}"

    return server


def test_call_many_bounds_concurrency_and_keeps_order() -> None:
    in_flight, peak, done = [0], [0], []
    with serve_asgi(_counting_server(in_flight, peak).streamable_http_app(json_response=True)) as url:
        with MCPClient(http(url)) as client:
            results = client.call_many("slow", [{"i": i} for i in range(12)], concurrency=4,
                                       on_result=lambda i, r: done.append(i))
    assert [r["content"][0]["text"] for r in results] == [f"answer {i}" for i in range(12)]
    # four in flight at once (the server counts them), never more; finished out of order, returned in order
    assert peak[0] == 4 and sorted(done) == list(range(12)) and done != list(range(12))


def test_call_many_stops_when_on_result_raises() -> None:
    in_flight, peak = [0], [0]
    calls: list[int] = []

    def stop(i: int, r: dict) -> None:  # type: ignore[type-arg]
        calls.append(i)
        if len(calls) == 3:
            raise MCPProtocolError("stop here")

    with serve_asgi(_counting_server(in_flight, peak).streamable_http_app(json_response=True)) as url:
        with MCPClient(http(url)) as client:
            with pytest.raises(MCPProtocolError, match="stop here"):
                client.call_many("slow", [{"i": i} for i in range(200)], concurrency=2, on_result=stop)
            assert client.call_tool("slow", {"i": 0})  # the session survives
    assert len(calls) == 3


def _session_noting_app(sessions: list[bytes], bogus: list[bool]) -> Callable:  # type: ignore[type-arg]
    """The fixture server, noting every session id a request carries; with ``bogus[0]`` set, every
    request after the handshake carries an id the server never issued (a server that forgets at once)."""
    app = build_server(NODES, "json").streamable_http_app(json_response=True)

    async def noting(scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            sessions.extend(v for k, v in scope["headers"] if k == b"mcp-session-id")
            if bogus[0]:
                scope = dict(scope, headers=[(k, b"f" * 32 if k == b"mcp-session-id" else v)
                                             for k, v in scope["headers"]])
        await app(scope, receive, send)

    return noting


def test_server_that_forgets_the_session_gets_a_new_one() -> None:
    """A dropped session is renewed once, as the spec asks (404 -> new initialize), and the call is sent again;
    concurrent calls that all saw it go share one new session."""
    sessions: list[bytes] = []
    with serve_asgi(_session_noting_app(sessions, [False])) as url, MCPClient(http(url)) as client:
        assert client.list_tools() and sessions
        first = sessions[-1]
        assert httpx.delete(url, headers={"Mcp-Session-Id": first.decode()}).status_code == 200
        assert "memory_render" in [t["name"] for t in client.list_tools()]
        second = sessions[-1]
        assert second != first
        assert httpx.delete(url, headers={"Mcp-Session-Id": second.decode()}).status_code == 200
        keys = [{"key": n["key"]} for n in NODES] * 4
        results = client.call_many("memory_render", keys, concurrency=8)
        assert [result_text(r) for r in results] == [client.call_tool("memory_render", k)["content"][0]["text"]
                                                      for k in keys]
        assert all(f"Evening {i}:" in result_text(r) for i, r in zip(list(range(7)) * 4, results))
        assert len(set(sessions) - {first, second}) == 1  # one new session for all eight calls in flight


def test_server_that_keeps_forgetting_the_session() -> None:
    """Renewed once, forgotten again: the run ends with one clear line, not a loop."""
    sessions: list[bytes] = []
    bogus = [False]
    with serve_asgi(_session_noting_app(sessions, bogus)) as url, MCPClient(http(url)) as client:
        assert client.list_tools()
        bogus[0] = True
        with pytest.raises(MCPError, match=r"MCP server http://\S+ returned JSON-RPC error -32600 for tools/list: "
                                           r"Session not found$"):
            client.list_tools()


# -- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_header_is_sent_on_every_request(transport: str) -> None:
    seen: list[str] = []
    with serve_memory_graph(NODES, "json", transport=transport, header=("Authorization", "Bearer t0k"),  # type: ignore[arg-type]
                            seen=seen) as url:
        with MCPClient(http(url, header_flags=["Authorization: Bearer t0k"])) as client:
            client.call_many("memory_render", [{"key": n["key"]} for n in NODES])
        assert len(seen) >= 3 + len(NODES)  # the server answers 401 to any request without it
        if transport == "http":
            assert {"POST /mcp", "DELETE /mcp"} <= set(seen)
        else:
            assert {"GET /sse", "POST /messages/"} <= set(seen)
        with pytest.raises(MCPTransportError, match=r"answered HTTP 401 Unauthorized to initialize"):
            MCPClient(http(url, header_flags=["Authorization: Bearer wrong"])).__enter__()


# -- failure shapes over HTTP: real sockets, raw servers -------------------------------------------


def _raw(status: int, ctype: bytes, body: bytes, delay: float = 0.0) -> Callable:  # type: ignore[type-arg]
    async def app(scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        await anyio.sleep(delay)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("app", "error", "message"),
    [
        (_raw(500, b"text/plain", b"boom"), MCPTransportError, "answered HTTP 500 Internal Server Error to initialize"),
        (_raw(404, b"text/plain", b"nf"), MCPTransportError, "answered HTTP 404 Not Found to initialize"),
        (_raw(200, b"application/json", b"<html>"), MCPProtocolError,
         "answered initialize with something that is not JSON-RPC: b'<html>'"),
        (_raw(200, b"text/event-stream", b"data: {not json\n\n"), MCPProtocolError,
         "answered initialize with something that is not JSON-RPC: '{not json'"),
        (_raw(200, b"text/html", b"<html>"), MCPProtocolError, "Unexpected content type: text/html"),
        (_raw(200, b"application/json", b"{}", delay=10.0), MCPTransportError, r"timed out after 0.2s during initialize"),
    ],
    ids=["500", "404", "json-not-json", "sse-not-json", "html", "slow"],
)
def test_http_failure_shapes(app: Callable, error: type, message: str) -> None:  # type: ignore[type-arg]
    with serve_asgi(app) as url:
        start = time.monotonic()
        with pytest.raises(error, match=message) as info:
            MCPClient(http(url, timeout=0.2)).__enter__()
        assert time.monotonic() - start < 5 and "\n" not in str(info.value)  # not the 10 s the slow one takes


def test_unreachable_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MCPTransportError, match=rf"cannot connect to MCP server http://127.0.0.1:{port}/mcp"):
        MCPClient(http(f"http://127.0.0.1:{port}/mcp")).__enter__()


def test_server_that_hangs_up() -> None:
    """Accepts the connection, then closes it without a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def hang_up() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            # Read the whole request before closing: closing with unread bytes makes the kernel send a
            # reset (the client then sees ReadError) instead of an orderly close, depending on timing.
            conn.settimeout(0.3)
            try:
                while conn.recv(65536):
                    pass
            except TimeoutError:
                pass
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/mcp"
    try:
        with pytest.raises(MCPTransportError, match=r"failed during initialize: RemoteProtocolError"):
            MCPClient(http(url, timeout=2)).__enter__()
    finally:
        srv.close()


# -- failure shapes over stdio: real child processes -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["no-such-memory-server", "--db", "x"], MCPTransportError,
         r"cannot start MCP server command \[no-such-memory-server --db x\]: 'no-such-memory-server' not found"),
        ([sys.executable, "-c", "import sys; print('no graph at /x', file=sys.stderr); sys.exit(3)"], MCPTransportError,
         r"closed the connection during initialize \(the server process ended or stopped answering; "
         r"its stderr: 'no graph at /x'\)"),
        ([sys.executable, "-c", "pass"], MCPTransportError, r"it wrote nothing to stderr"),
    ],
    ids=["not-found", "exits-with-message", "exits-silently"],
)
def test_stdio_command_that_cannot_serve(argv: list[str], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        MCPClient(stdio(*argv)).__enter__()
    assert not live_children()


def test_stdio_server_writing_junk_to_stdout() -> None:
    """A server that logs to stdout fails at its first line, not after the request timeout."""
    junk = "import sys; print('starting memory server...', flush=True); sys.stdin.read()"
    start = time.monotonic()
    with pytest.raises(MCPProtocolError, match=r"wrote something that is not JSON-RPC to stdout during initialize: "
                                               r"'starting memory server...' \(a stdio server must log to stderr\)"):
        MCPClient(stdio(sys.executable, "-c", junk, timeout=30)).__enter__()
    assert time.monotonic() - start < 20
    assert not live_children()


def test_stdio_child_killed_mid_listing(tmp_path: Path) -> None:
    target = stdio_server(tmp_path, "--pid-file", str(tmp_path / "pid"), "--list-delay", "30", timeout=60)
    with MCPClient(target) as client:
        pid = wait_for_pid(tmp_path / "pid")
        killer = threading.Timer(0.5, lambda: psutil.Process(pid).kill())
        killer.start()
        start = time.monotonic()
        with pytest.raises(MCPTransportError, match=r"closed the connection during tools/call memory_query "
                                                    r"\(the server process ended or stopped answering; its stderr: "
                                                    r"'memory server: 7 nodes'\)") as info:
            client.call_tool("memory_query", {})
        assert time.monotonic() - start < 10 and "\n" not in str(info.value)
    assert gone(pid) and not live_children()
