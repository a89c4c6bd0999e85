"""`hearth config show | keys`: the resolved settings and every key with its type and default."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from hearth import config, paths


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Show settings (hearth.yaml + HEARTH_* variables + overrides).", no_args_is_help=True)
    app.add_typer(group, name="config")

    @group.command("show")
    def show(overrides: list[str] = typer.Argument(None, help="key=value overrides to apply")) -> None:
        """Print the resolved settings as YAML."""
        resolved = config.settings(overrides or [])
        print(f"# {paths.settings_file()}" + ("" if paths.settings_file().exists() else " (not present: defaults)"))
        print(config.dump_yaml(resolved), end="")

    @group.command("keys")
    def keys() -> None:
        """List every settings key with its type, default and meaning."""
        table = Table("key", "type", "default", "description")
        for row in config.describe(config.Settings):
            table.add_row(*row)
        Console().print(table)
