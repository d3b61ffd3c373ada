"""Entry point of the ``npo`` command: collects ``register(app)`` from every command
module in :mod:`npo.cli` (modules whose names start with ``cmd_``)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated

import typer

import npo.cli

app = typer.Typer(
    name="npo",
    help="NPO: continual alignment monitoring for human-in-the-loop decision systems.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # plain help: flags shown as flags (no "<bool>"), and no text read as rich markup
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("npo")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            v = "unknown (not installed)"
        typer.echo(f"npo {v}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """NPO: continual alignment monitoring for human-in-the-loop decision systems."""


def _register_commands() -> None:
    for mod in sorted(pkgutil.iter_modules(npo.cli.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"npo.cli.{mod.name}").register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
