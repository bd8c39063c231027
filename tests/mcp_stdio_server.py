"""A memory-graph MCP server over stdio, for tests: run as a child process by the client.

    python mcp_stdio_server.py GRAPH.jsonl [--style upstream|json|server-memory]
        [--pid-file PATH] [--list-delay SECONDS] [--refuse KEY]...

Serves the nodes of a JSONL export with :func:`mcp_fixture_server.build_server` (the
upstream replica by default) on stdin/stdout, exactly as the upstream Rust server is run.
``--pid-file`` writes the process id first (tests kill it or check it is gone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mcp_fixture_server import build_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph", type=Path)
    parser.add_argument("--style", default="upstream")
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--list-delay", type=float, default=0.0)
    parser.add_argument("--refuse", action="append", default=[])
    args = parser.parse_args()
    if args.pid_file is not None:
        tmp = args.pid_file.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(args.pid_file)
    nodes = [json.loads(line) for line in args.graph.read_text().splitlines() if line.strip()]
    print(f"memory server: {len(nodes)} nodes", file=sys.stderr, flush=True)
    server = build_server(nodes, args.style, list_delay=args.list_delay, refuse=frozenset(args.refuse))
    server.run("stdio")


if __name__ == "__main__":
    main()
