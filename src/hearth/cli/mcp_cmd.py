"""`hearth mcp`: serve Hearth's knowledge base over MCP (stdio), and list the tools chat can call."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    mcp = typer.Typer(help="MCP: serve Hearth's tools to other apps; list the tools of configured MCP servers.")
    app.add_typer(mcp, name="mcp")

    @mcp.command("serve")
    def serve() -> None:
        """Run Hearth's MCP server on stdin/stdout (for desktop assistants and MCP clients).

        Over HTTP the same server is at /mcp of `hearth serve`.
        """
        from hearth import config
        from hearth.agent import mcp_server

        mcp_server.serve_stdio(config.settings())

    @mcp.command("tools")
    def tools() -> None:
        """List every tool a chat can call: built-ins and those of the servers in `mcp_servers:`."""
        from rich.console import Console
        from rich.table import Table

        from hearth import config
        from hearth.agent import mcp_client

        settings = config.settings()
        registry = mcp_client.full_registry(settings)
        table = Table("tool", "from", "enabled", "description")
        for tool in registry.tools.values():
            enabled = "no (agent.disabled_tools)" if tool.name in registry.disabled else "yes"
            table.add_row(tool.name, tool.source, enabled, tool.description[:80])
        console = Console()
        console.print(table)
        hub = mcp_client._hub
        for name, why in (hub.errors if hub else {}).items():
            console.print(f"[yellow]MCP server '{name}' is not available:[/] {why}", highlight=False)
        if hub:
            hub.close()
