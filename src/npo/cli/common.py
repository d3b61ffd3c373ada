"""Helpers shared by the command modules: store option, JSON/human output, errors.

Human output never interprets text as ``rich`` markup (both consoles have
``markup=False``): a value such as ``"x [/] y"`` in a record, a reason or a file name is
printed as it is. Styles are given explicitly (``style=``, :class:`rich.text.Text`).
Values echoed back in errors are shortened (:func:`npo.errors.shorten`), so that human
output stays linear in the size of the input; error lines are not wrapped by rich
(``soft_wrap``): one problem is one line, whatever the terminal width.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from npo.errors import ItemError, NPOError, ValidationFailed, shorten

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

console = Console(stderr=False, markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

#: longest reason / value echoed in human output (characters)
MAX_SHOWN = 300


def default_db() -> str:
    return os.environ.get("NPO_DB", DEFAULT_DB)


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


def error(message: str) -> None:
    """``error: message`` on stderr (the message is plain text, never markup)."""
    err_console.print(
        Text.assemble(("error: ", "bold red"), shorten(message, 4 * MAX_SHOWN)), soft_wrap=True
    )


def note(message: str, style: str = "yellow") -> None:
    """A plain sentence on stderr in ``style``."""
    err_console.print(Text(message, style=style), soft_wrap=True)


def indented(text: str, width: int, indent: int = 4) -> str:
    """``text`` wrapped to ``width`` columns, every line indented (no trailing spaces)."""
    import textwrap

    pad = " " * indent
    return textwrap.fill(
        text,
        width=max(20, width),
        initial_indent=pad,
        subsequent_indent=pad,
        break_on_hyphens=False,
    )


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def open_existing(db: str) -> Any:
    """Open a store that must already exist (commands that read): a SQLite path that is
    not there is an error naming ``--db`` instead of an attempt to create a store."""
    from npo.store import open_store

    if not is_postgres(db):
        path = db[len("sqlite:///") :] if db.startswith("sqlite:///") else db
        if path != ":memory:" and not Path(path).exists():
            raise ValidationFailed(
                [
                    ItemError(
                        0,
                        "--db",
                        f"no store at {shorten(path, 120)!r} (npo ingest FILE --db PATH "
                        "--actions a,b,... creates one; or set NPO_DB)",
                    )
                ],
                what="command",
            )
    return open_store(db)


def _option_error(e: ItemError, options: Mapping[str, str]) -> ItemError:
    """The error with a Python parameter name replaced by the command's option."""
    field = options.get(e.field, e.field)
    reason = e.reason
    for python, cli in options.items():
        if python.endswith("=[...]") or python.endswith("(...)"):
            reason = reason.replace(python, cli)
    return ItemError(e.index, field, reason, e.item_id, e.line)


def _is_option(e: ItemError) -> bool:
    return e.line is None and e.item_id is None and (e.field.startswith("-") or e.field.isupper())


def _shown(e: ItemError, where: bool = True) -> str:
    """``line 3 (id='d1'): field: reason`` (``where=False``: ``field: reason``)."""
    what = f"{shorten(e.field, 80)}: {shorten(e.reason, MAX_SHOWN)}"
    if not where:
        return what
    at = f"line {e.line}" if e.line is not None else f"item {e.index}"
    ident = f" (id={shorten(e.item_id, 80)!r})" if e.item_id is not None else ""
    return f"{at}{ident}: {what}"


def error_dict(e: ItemError) -> dict[str, Any]:
    """An :class:`ItemError` for ``--json``, with shortened values."""
    return {
        "index": e.index,
        "line": e.line,
        "id": None if e.item_id is None else shorten(e.item_id, 80),
        "field": shorten(e.field, 80),
        "reason": shorten(e.reason, MAX_SHOWN),
    }


def show_errors(errors: list[ItemError], head: str, limit: int = 50) -> None:
    """Print ``error: head`` and the first ``limit`` problems, one per line (without
    "item 0" when no problem is about an item of a batch)."""
    error(head)
    where = not all(e.line is None and e.item_id is None and e.index == 0 for e in errors)
    for e in errors[:limit]:
        err_console.print(Text(f"  - {_shown(e, where)}"), soft_wrap=True)
    if len(errors) > limit:
        err_console.print(Text(f"  … {len(errors) - limit} more"), soft_wrap=True)


def _from_pydantic(exc: BaseException) -> ValidationFailed | None:
    """A pydantic ``ValidationError`` as :class:`ValidationFailed` (field and reason, no
    documentation URL), or None for any other error."""
    errors = getattr(exc, "errors", None)
    if type(exc).__name__ != "ValidationError" or not callable(errors):
        return None
    items = [
        ItemError(
            0,
            ".".join(str(p) for p in e.get("loc", ())) or "value",
            str(e.get("msg", "invalid")).removeprefix("Value error, "),
        )
        for e in errors(include_url=False)
    ]
    return ValidationFailed(items, what="input")


def _report(exc: ValidationFailed, as_json: bool, opts: Mapping[str, str]) -> None:
    errors = [_option_error(e, opts) for e in exc.errors]
    about_options = all(_is_option(e) for e in errors)
    if about_options:
        message = "; ".join(f"{e.field}: {shorten(e.reason, MAX_SHOWN)}" for e in errors)
    else:
        head = str(exc.args[0]).split(":", 1)[0] if exc.args else "rejected"
        message = shorten(head, MAX_SHOWN)
    if as_json:
        emit_json(
            {
                "ok": False,
                "error": message if about_options else shorten(str(exc), 4 * MAX_SHOWN),
                "errors": [error_dict(e) for e in errors],
            }
        )
    elif about_options:
        for e in errors:
            error(f"{e.field}: {e.reason}")
    else:
        show_errors(errors, message)


@contextmanager
def cli_errors(as_json: bool = False, options: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn NPO errors into a clear message (or a JSON error document) and exit code 2.

    ``options`` maps the names the library uses (parameters, fields, phrases such as
    ``"trusted=[...]"``) to the command's options, so that errors name what a person
    types (``--budget``, not ``deferral_budget``)."""
    opts = {"window": "--since/--until", **(options or {})}
    try:
        yield
    except ValidationFailed as exc:
        _report(exc, as_json, opts)
        raise typer.Exit(2) from None
    except (NPOError, FileNotFoundError, ValueError) as exc:
        as_items = _from_pydantic(exc)
        if as_items is not None:
            _report(as_items, as_json, opts)
            raise typer.Exit(2) from None
        message = str(exc)
        for python, cli in opts.items():
            if python.endswith("=[...]") or python.endswith("(...)"):
                message = message.replace(python, cli)
        if as_json:
            emit_json({"ok": False, "error": shorten(message, 4 * MAX_SHOWN)})
        else:
            error(message)
        raise typer.Exit(2) from None


def show_progress() -> bool:
    """Progress bars only on a terminal."""
    return sys.stderr.isatty()


Registrar = Callable[[typer.Typer], None]
