"""A real MCP server (the official SDK's MCPServer, streamable HTTP) for connector tests.

Run as ``python mcp_ticket_server.py PORT CALLS_FILE TOKEN``: ``create_ticket`` appends one
line to CALLS_FILE per call, so a test counts the calls the server really received; requests
without ``Authorization: Bearer TOKEN`` are refused.
"""

import sys
from pathlib import Path

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse

port, calls_file, token = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
server = MCPServer("tickets")


@server.tool(title="Create ticket", description="Open a ticket in the help desk.")
def create_ticket(title: str) -> dict:
    with calls_file.open("a") as calls:
        calls.write(title + "\n")
    number = len(calls_file.read_text().splitlines())
    return {"ticket": f"T-{number}", "title": title}


@server.tool(description="Look a ticket up.")
def get_ticket(number: str) -> str:
    return f"ticket {number}"


def app_with_auth():
    app = server.streamable_http_app()

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    uvicorn.run(app_with_auth(), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
