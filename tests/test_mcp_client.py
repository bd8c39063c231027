"""The MCP client: against the SDK's real server where the contract is the point, and against
raw servers / httpx.MockTransport for each failure shape a deployed server can show."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from amygdala_vllm.errors import MCPProtocolError, MCPTransportError, UsageError
from amygdala_vllm.pairs.mcp_client import MCPClient, _sse_events, result_json
from mcp_fixture_server import serve_asgi, serve_memory_graph

NODES = [
    {"key": f"journal/2026-03-{i:02d}#evening", "content": f"Evening {i}: a long enough body.\nwarmth:{i}",
     "type": "daily", "category": "core" if i % 2 else None}
    for i in range(7)
]


# -- against the real SDK server ----------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["sse", "json"])
def upstream_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with serve_memory_graph(NODES, json_response=request.param) as url:
        yield url


def test_handshake_gives_session_and_tools(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        assert client.session_id and len(client.session_id) >= 16
        assert client.protocol_version == "2025-06-18"
        names = {t["name"] for t in client.list_tools()}
        assert {"memory_query", "memory_render", "memory_search", "journal_tail"} <= names
        client.require_tools(["memory_query", "memory_render"])


def test_missing_tool_lists_what_exists(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        with pytest.raises(MCPProtocolError, match=r"no tool 'read_graph'.*available: journal_tail, memory_pages"):
            client.require_tools(["memory_query", "read_graph"])


def test_cursor_paging_by_hand(upstream_url: str) -> None:
    keys, cursor, pages = [], None, 0
    with MCPClient(upstream_url, timeout=5) as client:
        while True:
            args = {"cursor": cursor} if cursor else {}
            payload = result_json(client.call_tool("memory_query", args))[0]
            keys += [n["key"] for n in payload["nodes"]]
            pages += 1
            cursor = payload["next_cursor"]
            if cursor is None:
                break
    assert pages == 3 and keys == [n["key"] for n in NODES]


def test_fetch_tool_returns_text_and_links(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        text = client.call_tool("memory_render", {"key": NODES[1]["key"]})["content"][0]["text"]
    assert text.startswith(NODES[1]["content"] + "\n\nLinks:\n- -> " + NODES[0]["key"])


def test_is_error_result_carries_server_message(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        with pytest.raises(MCPProtocolError, match=r"'memory_render'.*no node with key 'nope'"):
            client.call_tool("memory_render", {"key": "nope"})


def test_jsonrpc_error_from_real_server(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        with pytest.raises(MCPProtocolError, match=r"JSON-RPC error -32601 for no/such"):
            client.request("no/such", {})


def test_expired_session_is_reinitialised_once(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        old = client.session_id
        # The server forgets the session behind the client's back.
        assert httpx.delete(upstream_url, headers={"Mcp-Session-Id": old}).status_code == 200
        assert client.list_tools()
        assert client.reinitialisations == 1 and client.session_id not in (None, old)


def test_close_deletes_session(upstream_url: str) -> None:
    with MCPClient(upstream_url, timeout=5) as client:
        sid = client.session_id
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}
    r = httpx.post(upstream_url, json=body, headers={"Mcp-Session-Id": sid,
                                                     "Accept": "application/json, text/event-stream"})
    assert r.status_code == 404


# -- failure shapes: real sockets ---------------------------------------------------------


def test_unreachable_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    with pytest.raises(MCPTransportError, match=rf"cannot connect to MCP server {url}"):
        MCPClient(url, timeout=2).initialize()


def test_server_that_hangs_up() -> None:
    """Accepts the connection, then closes it without a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def hang_up() -> None:
        for _ in range(2):  # httpx may retry once on a fresh connection
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/mcp"
    try:
        with pytest.raises(MCPTransportError, match=rf"{url} failed during initialize"):
            MCPClient(url, timeout=2).initialize()
    finally:
        srv.close()


async def _slow_app(scope: dict, receive: Callable, send: Callable) -> None:
    """Headers at once, then an SSE body that stalls (a path of /slow-headers stalls before headers)."""
    import anyio

    if scope["type"] != "http":
        return
    if scope["path"] == "/slow-headers":
        await anyio.sleep(0.6)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
    await anyio.sleep(0.6)
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
def test_timeout(path: str) -> None:
    with serve_asgi(_slow_app, path=path) as url:
        start = time.monotonic()
        with pytest.raises(MCPTransportError, match=r"timed out after 0.2s during initialize"):
            MCPClient(url, timeout=0.2).initialize()
        assert time.monotonic() - start < 1.0


# -- failure shapes: protocol-level, through MockTransport ---------------------------------


def _fake(
    answer: Callable[[str, dict[str, Any], httpx.Request], httpx.Response | None] | None = None,
    log: list[httpx.Request] | None = None,
    version: str = "2025-06-18",
) -> httpx.MockTransport:
    """A well-behaved JSON-mode server unless ``answer`` returns a response for a request."""

    def handler(request: httpx.Request) -> httpx.Response:
        if log is not None:
            log.append(request)
        if request.method == "DELETE":
            return httpx.Response(200)
        body = json.loads(request.content)
        method = body.get("method", "")
        if answer is not None and (resp := answer(method, body, request)) is not None:
            return resp
        if "id" not in body:
            return httpx.Response(202)
        result: dict[str, Any] = {}
        if method == "initialize":
            result = {"protocolVersion": version, "capabilities": {}, "serverInfo": {"name": "fake"}}
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result},
                                  headers={"Mcp-Session-Id": "s1"})
        if method == "tools/list":
            result = {"tools": [{"name": "t"}]}
        if method == "tools/call":
            result = {"content": [{"type": "text", "text": "ok"}]}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})

    return httpx.MockTransport(handler)


URL = "http://127.0.0.1:9/mcp"


def test_negotiated_version_is_sent_back() -> None:
    seen: list[httpx.Request] = []
    with MCPClient(URL, transport=_fake(log=seen, version="2025-11-25")) as client:
        client.list_tools()
    assert client.protocol_version == "2025-11-25"
    assert [r.headers.get("MCP-Protocol-Version") for r in seen[1:]] == ["2025-11-25"] * (len(seen) - 1)
    assert all(r.headers["Mcp-Session-Id"] == "s1" for r in seen[1:])
    assert seen[0].headers["Accept"] == "application/json, text/event-stream"
    assert seen[-1].method == "DELETE"


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
def test_http_error_status(status: int) -> None:
    transport = _fake(lambda m, b, r: httpx.Response(status, text="nope") if m == "initialize" else None)
    with pytest.raises(MCPTransportError, match=rf"{URL} answered HTTP {status} .* to initialize: nope"):
        MCPClient(URL, transport=transport).initialize()


def test_http_error_after_handshake() -> None:
    transport = _fake(lambda m, b, r: httpx.Response(502) if m == "tools/list" else None)
    with MCPClient(URL, transport=transport) as client:
        with pytest.raises(MCPTransportError, match="HTTP 502 Bad Gateway to tools/list"):
            client.list_tools()


def test_jsonrpc_error_object() -> None:
    err = {"code": -32602, "message": "Invalid params: cursor"}
    transport = _fake(lambda m, b, r: httpx.Response(200, json={"jsonrpc": "2.0", "id": b["id"], "error": err})
                      if m == "tools/list" else None)
    with MCPClient(URL, transport=transport) as client:
        with pytest.raises(MCPProtocolError, match=r"JSON-RPC error -32602 for tools/list: Invalid params: cursor"):
            client.list_tools()


def test_is_error_result() -> None:
    res = {"content": [{"type": "text", "text": "database locked"}], "isError": True}
    transport = _fake(lambda m, b, r: httpx.Response(200, json={"jsonrpc": "2.0", "id": b["id"], "result": res})
                      if m == "tools/call" else None)
    with MCPClient(URL, transport=transport) as client:
        with pytest.raises(MCPProtocolError, match=r"tool 't' .* failed: database locked"):
            client.call_tool("t", {})


def _sse(text: str) -> httpx.Response:
    return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("event: message\ndata: {not json\n\n", "malformed SSE event"),
        ("event: message\ndata: {\"jsonrpc\": \"2.0\", \"id\": 99, \"result\": {}}\n\n", "ended without a response"),
        ("", "ended without a response"),
    ],
    ids=["bad-json", "wrong-id", "empty"],
)
def test_malformed_sse(body: str, message: str) -> None:
    transport = _fake(lambda m, b, r: _sse(body) if m == "tools/list" else None)
    with MCPClient(URL, transport=transport) as client:
        with pytest.raises(MCPProtocolError, match=message):
            client.list_tools()


def test_sse_skips_notifications_and_other_ids() -> None:
    def answer(m: str, b: dict, r: httpx.Request) -> httpx.Response | None:
        if m != "tools/list":
            return None
        rid = b["id"]
        return _sse(
            ": comment\n\n"
            'data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
            f'event: message\nid: e1\ndata: {{"jsonrpc":"2.0","id":{rid + 100},"result":{{"tools":[]}}}}\n\n'
            f'data: {{"jsonrpc":"2.0","id":{rid},\ndata: "result":{{"tools":[{{"name":"x"}}]}}}}\n\n'
        )

    with MCPClient(URL, transport=_fake(answer)) as client:
        assert [t["name"] for t in client.list_tools()] == ["x"]


@pytest.mark.parametrize(
    ("ctype", "body", "message"),
    [("application/json", b"<html>", "invalid JSON"), ("text/html", b"<html>", "Content-Type 'text/html'")],
)
def test_non_json_answers(ctype: str, body: bytes, message: str) -> None:
    transport = _fake(lambda m, b, r: httpx.Response(200, content=body, headers={"content-type": ctype})
                      if m == "tools/list" else None)
    with MCPClient(URL, transport=transport) as client:
        with pytest.raises(MCPProtocolError, match=message):
            client.list_tools()


def _expiring(times: int, inits: list[str]) -> httpx.MockTransport:
    """Each initialize hands out a new session; the first ``times`` tools/list calls get 404."""
    state = {"left": times}

    def answer(m: str, b: dict, r: httpx.Request) -> httpx.Response | None:
        if m == "initialize":
            sid = f"s{len(inits) + 1}"
            inits.append(sid)
            res = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {}}
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": b["id"], "result": res},
                                  headers={"Mcp-Session-Id": sid})
        if m == "tools/list" and state["left"] > 0:
            state["left"] -= 1
            return httpx.Response(404, json={"jsonrpc": "2.0", "id": None,
                                             "error": {"code": -32600, "message": "Session not found"}})
        if m == "tools/list":
            assert r.headers["Mcp-Session-Id"] == inits[-1]
        return None

    return _fake(answer)


def test_session_expiry_reinitialises_once_then_succeeds() -> None:
    inits: list[str] = []
    with MCPClient(URL, transport=_expiring(1, inits)) as client:
        assert client.list_tools() == [{"name": "t"}]
        assert client.session_id == "s2" and client.reinitialisations == 1
    assert inits == ["s1", "s2"]


def test_session_expiry_twice_fails() -> None:
    inits: list[str] = []
    with MCPClient(URL, transport=_expiring(2, inits)) as client:
        with pytest.raises(MCPTransportError, match="HTTP 404 to tools/list: session expired again"):
            client.list_tools()
    assert inits == ["s1", "s2"]


def test_404_without_session_is_plain_http_error() -> None:
    transport = _fake(lambda m, b, r: httpx.Response(404) if m == "initialize" else None)
    with pytest.raises(MCPTransportError, match="HTTP 404 Not Found to initialize"):
        MCPClient(URL, transport=transport).initialize()


def test_failed_delete_is_ignored() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            raise httpx.ConnectError("gone")
        return _fake().handle_request(request)

    with MCPClient(URL, transport=httpx.MockTransport(handler)) as client:
        client.list_tools()


def test_tools_list_follows_next_cursor() -> None:
    def answer(m: str, b: dict, r: httpx.Request) -> httpx.Response | None:
        if m != "tools/list":
            return None
        cursor = b["params"].get("cursor")
        res = {"tools": [{"name": "b"}]} if cursor == "c2" else {"tools": [{"name": "a"}], "nextCursor": "c2"}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": b["id"], "result": res})

    with MCPClient(URL, transport=_fake(answer)) as client:
        assert [t["name"] for t in client.list_tools()] == ["a", "b"]


def test_sse_parser_multiline_and_comments() -> None:
    events = list(_sse_events(["event: x", "data: a", "data:b", "", ": c", "data: last"]))
    assert events == [("x", "a\nb"), ("message", "last")]


def test_result_json_candidates() -> None:
    text = {"type": "text", "text": '{"a": 1}'}
    assert result_json({"structuredContent": {"result": [1]}, "content": [text]}) == [{"result": [1]}, [1], {"a": 1}]
    per_item = [{"type": "text", "text": '{"k": 1}'}, {"type": "text", "text": '{"k": 2}'}]
    assert result_json({"content": per_item}) == [[{"k": 1}, {"k": 2}]]
    assert result_json({"content": [{"type": "text", "text": "plain words"}]}) == []


@pytest.mark.parametrize("url", ["localhost:8000/mcp", "ftp://127.0.0.1/mcp", "http:///mcp", "http://[::1/mcp"])
def test_bad_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="MCP server URL"):
        MCPClient(url)
