"""Entry point of the ``npo`` command: collects ``register(app)`` from every command
module in :mod:`npo.cli` (modules whose names start with ``cmd_``)."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import npo.cli

app = typer.Typer(
    name="npo",
    help="NPO: continual alignment monitoring for human-in-the-loop decision systems.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _register_commands() -> None:
    for mod in sorted(pkgutil.iter_modules(npo.cli.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"npo.cli.{mod.name}").register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
