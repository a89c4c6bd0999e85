"""`hearth chat`: placeholder registration until the generation path lands (filled in below)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
