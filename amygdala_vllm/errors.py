"""Every error amygdala-vllm raises on purpose, in one tree.

The CLI catches :class:`AmygdalaError` once, prints ``Type: message`` and exits
non-zero, so a user never sees a traceback for bad input. Anything else that
escapes is a bug in this package.

    AmygdalaError
    ├── UsageError            a flag or argument that cannot work
    ├── FormatError           a file that is not what its format says
    ├── SourceError           a memory graph source that cannot be read
    │   └── MCPError          talking to an MCP server
    │       ├── MCPTransportError   unreachable, refused, timed out, HTTP 4xx/5xx
    │       └── MCPProtocolError    JSON-RPC error, malformed SSE, isError results
    ├── StoreError            an output location that cannot be written safely
    ├── ModelError            a model that cannot be prepared or used as a decoder
    ├── CaptureError          activations that are missing, inconsistent or non-finite
    ├── IncompatibleVLLMError the installed vLLM lacks something we rely on
    ├── ClusterError          a Ray cluster that cannot be reached or loses the work
    └── ValidationFailed      validate ran fine but the vectors missed the bar
"""

from __future__ import annotations

__all__ = [
    "AmygdalaError",
    "UsageError",
    "FormatError",
    "SourceError",
    "MCPError",
    "MCPTransportError",
    "MCPProtocolError",
    "StoreError",
    "ModelError",
    "CaptureError",
    "IncompatibleVLLMError",
    "ClusterError",
    "ValidationFailed",
]


class AmygdalaError(Exception):
    """Base of every deliberate error; the CLI turns it into one line and exit 1."""


class UsageError(AmygdalaError):
    """A flag, argument or combination of them that cannot work."""


class FormatError(AmygdalaError):
    """A file whose content does not match its documented format."""


class SourceError(AmygdalaError):
    """A memory-graph source (file, folder, server) that cannot be read."""


class MCPError(SourceError):
    """Any failure talking to an MCP memory server."""


class MCPTransportError(MCPError):
    """The server could not be reached or answered with an HTTP error."""


class MCPProtocolError(MCPError):
    """The server answered, but not with a usable JSON-RPC / MCP result."""


class StoreError(AmygdalaError):
    """An output location that exists with foreign content or cannot be written."""


class ModelError(AmygdalaError):
    """A model that cannot be prepared, found, or used as a decoder-only LM."""


class CaptureError(AmygdalaError):
    """Captured activations that are missing, inconsistent or not finite."""


class IncompatibleVLLMError(AmygdalaError):
    """The installed vLLM lacks an internal this package depends on."""


class ClusterError(AmygdalaError):
    """A Ray cluster that cannot be reached, has too few resources, or keeps losing a piece of work."""


class ValidationFailed(AmygdalaError):
    """Validation completed but a metric fell below the requested bar."""
