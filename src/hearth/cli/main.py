"""`hearth` — the entry point. Global options, error printing, and the list of command modules."""

from __future__ import annotations

import importlib
import sys
import traceback

import typer
from rich.console import Console
from rich.markup import escape

from hearth import __version__, paths
from hearth.errors import HearthError

app = typer.Typer(
    help="Hearth: a private, self-hosted AI stack — train, fine-tune, inspect, know, act and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
_state = {"debug": False}

# Each module defines `register(app)`; they import heavy libraries only inside their commands,
# so `hearth --help` stays fast.
COMMAND_MODULES = [
    "hearth.cli.config_cmd",
    "hearth.cli.models_cmd",
    "hearth.cli.chat_cmd",
    "hearth.cli.serve_cmd",
    "hearth.cli.train_cmd",
    "hearth.cli.kb_cmd",
    "hearth.cli.eval_cmd",
    "hearth.cli.mcp_cmd",
    "hearth.cli.tune_cmd",
    "hearth.cli.data_cmd",
    "hearth.cli.loop_cmd",
    "hearth.cli.debug_cmd",
]


def _version(value: bool) -> None:
    if value:
        print(f"hearth {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    home: str | None = typer.Option(None, "--home", help="Hearth home folder (default $HEARTH_HOME or ~/.hearth)"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    if home:
        paths.set_home(home)
    _state["debug"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv)
    except HearthError as exc:
        if _state["debug"] or "--debug" in (argv or sys.argv):
            traceback.print_exc()
        # soft_wrap: a message is one line however narrow the terminal, so it can be grepped and copied
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
