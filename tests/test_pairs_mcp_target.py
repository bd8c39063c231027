"""ServerTarget: the server flags and AMYGDALA_MCP_HEADERS checked and combined; secrets kept out."""

from __future__ import annotations

import pytest

from amygdala_vllm.errors import UsageError
from amygdala_vllm.pairs.mcp.target import HEADERS_ENV, make_target, parse_headers

URL = "http://127.0.0.1:7777/mcp"


def test_url_targets_and_transport_choice() -> None:
    assert make_target(url=URL, command=None, environ={}).transport == "http"
    assert make_target(url="http://h:1/sse", command=None, environ={}).transport == "sse"
    assert make_target(url="http://h:1/sse/", command=None, transport="http", environ={}).transport == "http"
    assert make_target(url=URL, command=None, transport="sse", environ={}).transport == "sse"


def test_command_is_split_like_a_shell() -> None:
    t = make_target(url=None, command="poc-memory mcp --db '/my data/graph'", environ={HEADERS_ENV: "A: b"})
    assert (t.transport, t.command, dict(t.headers)) == ("stdio", ("poc-memory", "mcp", "--db", "/my data/graph"), {})
    assert t.describe() == {"transport": "stdio", "command": ["poc-memory", "mcp", "--db", "/my data/graph"]}


def test_headers_from_env_and_flags_flag_wins() -> None:
    env = {HEADERS_ENV: "Authorization: Bearer from-env\n\nX-Team:  memory \n"}
    t = make_target(url=URL, command=None, header_flags=["authorization: Bearer from-flag"], environ=env)
    assert dict(t.headers) == {"X-Team": "memory", "authorization": "Bearer from-flag"}


def test_secrets_stay_out_of_repr_description_and_messages() -> None:
    t = make_target(url="http://user:pw@127.0.0.1:1/mcp", command=None,
                    header_flags=["Authorization: Bearer s3cret"], environ={})
    assert "s3cret" not in repr(t) and "pw" not in repr(t).replace("pw@", "")
    assert "s3cret" not in str(t.describe()) and "pw" not in t.where and "pw" not in str(t.describe())
    assert t.describe() == {"transport": "http", "url": "http://127.0.0.1:1/mcp", "header_names": ["Authorization"]}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["Authorization Bearer s3cret"], r"header 1 of --mcp-header has no ':'; write it as 'Name: value'"),
        (["A: b", "Bad Name: x"], r"header 2 of --mcp-header: 'Bad Name' is not a valid header name"),
        (["X-Empty:  "], r"header 1 of --mcp-header \(X-Empty\) has an empty value"),
    ],
)
def test_bad_headers(lines: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_headers(lines, "--mcp-header")
    assert "s3cret" not in str(info.value)


def test_bad_header_in_env_names_the_variable() -> None:
    with pytest.raises(UsageError, match=f"header 1 of {HEADERS_ENV} has no ':'"):
        make_target(url=URL, command=None, environ={HEADERS_ENV: "token-without-name"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": None, "command": None}, "exactly one of --memory-mcp-url and --memory-mcp-command"),
        ({"url": URL, "command": "x"}, "exactly one of"),
        ({"url": None, "command": "  "}, "--memory-mcp-command is empty"),
        ({"url": None, "command": "srv 'unclosed"}, "cannot be split into words"),
        ({"url": None, "command": "srv", "transport": "http"}, "a command always speaks stdio"),
        ({"url": None, "command": "srv", "header_flags": ["A: b"]}, "--mcp-header applies to HTTP servers"),
        ({"url": URL, "command": None, "transport": "websocket"}, "--mcp-transport must be one of auto, http, sse"),
        ({"url": "localhost:8000/mcp", "command": None}, "must be http"),
        ({"url": "ftp://127.0.0.1/mcp", "command": None}, "must be http"),
        ({"url": "http://[::1/mcp", "command": None}, "invalid MCP server URL"),
        ({"url": URL, "command": None, "timeout": 0}, "--mcp-timeout must be > 0"),
    ],
)
def test_bad_flags(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_target(environ={}, **kwargs)
