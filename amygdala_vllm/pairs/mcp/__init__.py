"""``pairs``' MCP client: read a memory graph from an MCP server (stdio or HTTP) with the official SDK.

- :mod:`.target`: which server to talk to (a command line or a URL) and how;
- :mod:`.transport`: the SDK's stdio / streamable-HTTP transports, opened and closed;
- :mod:`.client`: the session, tool calls, paging;
- :mod:`.mapping`: how to read memory nodes out of one particular server;
- :mod:`.results`: tool results, read in their wire shape;
- :mod:`.errors`: what the SDK raises, as one line of the project's error tree;
- :mod:`.source`: all of it as a node source for ``pairs``.

See ``docs/mcp.md``.
"""
