"""`hearth serve` (API + web UI + MCP in one process) and `hearth keys` (create, list, revoke API keys)."""

from __future__ import annotations

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    keys_app = typer.Typer(help="API keys: create (shown once), list, revoke. Only hashes are stored.")
    keys_app.command("create")(keys_create)
    keys_app.command("list")(keys_list)
    keys_app.command("revoke")(keys_revoke)
    app.add_typer(keys_app, name="keys")


def serve(
    host: str | None = typer.Option(None, "--host", help="address to bind (default server.host, 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", "-p", help="TCP port (default server.port, 8000)"),
    keys: bool | None = typer.Option(None, "--keys/--no-keys", help="require API keys (default server.require_keys)"),
    ui: bool = typer.Option(True, "--ui/--no-ui", help="mount the web UI at /ui"),
    demo: bool = typer.Option(
        True, "--demo/--no-demo", help="ingest Hearth's docs as the 'hearth-docs' knowledge base at first start"
    ),
    max_queue: int = typer.Option(64, "--max-queue", help="requests waiting for the model before 429"),
    timeout: float = typer.Option(300.0, "--timeout", help="seconds one request may take (waiting + decoding)"),
    override: list[str] = typer.Option([], "--set", help="settings override key=value (repeatable)"),
) -> None:
    """Serve the OpenAI-compatible API (/v1), the Hearth API (/api, docs at /docs), the web UI (/ui) and MCP (/mcp)."""
    import uvicorn

    from hearth import config
    from hearth.serve import app as server
    from hearth.serve import keys as api_keys

    settings = config.settings(override)
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    if keys is not None:
        settings.server.require_keys = keys
    bind = settings.server.host
    if settings.server.require_keys and not api_keys.load_keys():
        # A first start with keys required (a container has no shell to run `hearth keys create` in):
        # make an admin key and show it once, in the log; later starts find it in keys.json.
        secret = api_keys.create_key("admin")
        typer.echo(f"Keys are required and none existed: created admin key 'admin' (shown once): {secret}", err=True)
    if not server.is_loopback(bind) and not settings.server.require_keys:
        err.print(
            f"[bold yellow]warning:[/] binding to {bind} without API keys: anyone who can reach this machine "
            "can use the model and read your knowledge bases. Use --keys (and `hearth keys create NAME`)."
        )
    application = server.create_app(settings, ui=ui, max_pending=max_queue, timeout=timeout, demo=demo)
    out.print(f"Hearth on http://{bind}:{settings.server.port}  (UI /ui · API /v1 · docs /docs · MCP /mcp)")
    uvicorn.run(application, host=bind, port=settings.server.port, log_level="info", timeout_graceful_shutdown=5)


def keys_create(
    name: str = typer.Argument(help="who or what the key is for"),
    kb: str = typer.Option("", "--kb", help="limit the key to these knowledge bases (comma-separated); never admin"),
    admin: bool | None = typer.Option(
        None,
        "--admin/--user",
        help="admin: everything, like the CLI (the default without --kb); user: chat and every knowledge base, "
        "but no training, settings, inspector or other keys' jobs",
    ),
) -> None:
    """Create a key and print it once (only its sha256 is stored). Without --kb it is an admin key."""
    from hearth.serve import keys as api_keys

    kbs = [k.strip() for k in kb.split(",") if k.strip()] or None
    secret = api_keys.create_key(name, kbs, admin=admin)
    role = "admin" if kbs is None and admin is not False else "scoped" if kbs else "user"
    err.print(f"Created {role} key '{name}'. Copy it now: it is not stored and cannot be shown again.")
    print(secret)


def keys_list() -> None:
    """List key names, their knowledge-base limits and creation times (never the keys)."""
    import datetime

    from rich.table import Table

    from hearth.serve import keys as api_keys

    table = Table("name", "role", "knowledge bases", "created")
    for key in api_keys.load_keys():
        when = datetime.datetime.fromtimestamp(key.created).isoformat(timespec="seconds")
        role = "admin" if key.is_admin else "user"
        table.add_row(key.name, role, ", ".join(key.kbs) if key.kbs else "all", when)
    out.print(table)


def keys_revoke(name: str = typer.Argument(help="the key's name")) -> None:
    """Delete a key; clients using it are refused from the next request on."""
    from hearth.serve import keys as api_keys

    api_keys.revoke_key(name)
    err.print(f"Revoked key '{name}'.")
