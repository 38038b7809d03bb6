"""An MCP server on the official Python SDK whose one tool, `trace_context`, answers with
the W3C trace context the call carried in its `_meta` (SEP-414): what the tests read to see
that our MCP client continues the turn's trace.

    python trace_echo.py               # stdio
    python trace_echo.py --http PORT   # streamable HTTP on 127.0.0.1:PORT/mcp
"""

import json
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("trace-echo")


@server.tool()
def trace_context(ctx: Context) -> str:
    """The traceparent and tracestate this call carried."""
    meta = ctx.request_context.meta
    if meta is None:
        seen = {}
    elif hasattr(meta, "model_dump"):
        seen = meta.model_dump(by_alias=True, exclude_none=True)
    else:
        seen = dict(meta)
    return json.dumps({k: seen.get(k) for k in ("traceparent", "tracestate")})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
