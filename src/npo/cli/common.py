"""Helpers shared by the command modules: store option, JSON/human output, errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console

from npo.errors import NPOError, ValidationFailed

DEFAULT_DB = "npo.db"

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="NPO_DB",
        help="Store: a SQLite file path (embedded default) or a postgresql:// URL.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]

console = Console(stderr=False)
err_console = Console(stderr=True)


def default_db() -> str:
    return os.environ.get("NPO_DB", DEFAULT_DB)


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


@contextmanager
def cli_errors(as_json: bool = False) -> Iterator[None]:
    """Turn NPO errors into a clear message (or a JSON error document) and exit code 2."""
    try:
        yield
    except ValidationFailed as exc:
        if as_json:
            emit_json({"ok": False, "error": str(exc), "errors": [e.to_dict() for e in exc.errors]})
        else:
            err_console.print(f"[bold red]error:[/] {exc.args[0].split(':')[0]}")
            for e in exc.errors[:50]:
                err_console.print(f"  - {e}")
            if len(exc.errors) > 50:
                err_console.print(f"  … {len(exc.errors) - 50} more")
        raise typer.Exit(2) from None
    except (NPOError, FileNotFoundError, ValueError) as exc:
        if as_json:
            emit_json({"ok": False, "error": str(exc)})
        else:
            err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def show_progress() -> bool:
    """Progress bars only on a terminal."""
    return sys.stderr.isatty()


Registrar = Callable[[typer.Typer], None]
