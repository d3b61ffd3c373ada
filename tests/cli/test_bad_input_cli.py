"""Bad-input corpus of the command line (issue 14, items 3 and 5): a bad item in a *later*
chunk, damaged ``.gz`` files, huge values and text that looks like ``rich`` markup.

Each case runs ``npo`` on a real store (SQLite and PostgreSQL), and asserts the exact
exit code, the precise message (line, id, field, reason), that no exception escaped, and
that the store is byte-for-byte what it was (SQLite: the file; PostgreSQL: ``pg_dump``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import build_store, npo, snapshot

BIG = 10_000_000  # a 10 MB value


def dec(i: int, **kw: Any) -> dict[str, Any]:
    d = {
        "id": f"d{i}",
        "scenario_id": f"s{i}",
        "policy_version": "v1",
        "scores": [0.6, 0.3, 0.1],
        "action": "reboot",
        "propensity": 0.5,
        "timestamp": "2025-02-01T00:00:00+00:00",
    }
    d.update(kw)
    return d


def lines(rows: list[Any]) -> bytes:
    return b"".join(
        (r if isinstance(r, str) else json.dumps(r)).encode("utf-8") + b"\n" for r in rows
    )


def new_decisions(n: int = 120) -> list[dict[str, Any]]:
    return [dec(1000 + i) for i in range(n)]  # ids not in the seeded store


def _surrogate_in_chunk_3(tmp: Path) -> list[str]:
    rows: list[Any] = new_decisions()
    rows[100] = json.dumps(rows[100]).replace('"s1100"', '"s\\ud800x"')
    (tmp / "d.jsonl").write_bytes(lines(rows))
    return ["ingest", str(tmp / "d.jsonl"), "--batch-size", "50", "--all-or-nothing"]


def _surrogate_key(tmp: Path) -> list[str]:
    rows: list[Any] = new_decisions(3)
    rows[1] = json.dumps(rows[1])[:-1] + ', "note\\udc00": 1}'
    (tmp / "d.jsonl").write_bytes(lines(rows))
    return ["ingest", str(tmp / "d.jsonl")]


def _parquet_list_of_text(tmp: Path) -> list[str]:
    n = 120
    scores = [["0.6", "0.3", "0.1"]] * n
    scores[100] = ["0.6", "abc", "0.1"]
    return _parquet_scores(tmp, pa.array(scores, pa.list_(pa.string())))


def _parquet_null_score_in_later_row_group(tmp: Path) -> list[str]:
    scores: list[list[float | None]] = [[0.6, 0.3, 0.1] for _ in range(120)]
    scores[100] = [0.6, None, 0.1]
    return _parquet_scores(tmp, pa.array(scores, pa.list_(pa.float64())))


def _parquet_scores(tmp: Path, scores: pa.Array) -> list[str]:
    n = len(scores)
    rows = new_decisions(n)
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "scenario_id": [r["scenario_id"] for r in rows],
            "policy_version": ["v1"] * n,
            "scores": scores,
            "action": ["reboot"] * n,
            "propensity": [0.5] * n,
        }
    )
    pq.write_table(table, tmp / "d.parquet", row_group_size=50)
    return ["ingest", str(tmp / "d.parquet"), "--batch-size", "50", "--all-or-nothing"]


def _id_repeated_in_chunk_3(tmp: Path) -> list[str]:
    rows: list[Any] = new_decisions()
    rows.append(dec(1003, action="reimage"))  # line 121 re-sends line 4 with another action
    (tmp / "d.jsonl").write_bytes(lines(rows))
    return ["ingest", str(tmp / "d.jsonl"), "--batch-size", "50", "--all-or-nothing"]


def _gz(rows: list[Any]) -> bytes:
    return gzip.compress(lines(rows), mtime=0)


def _complete_lines(data: bytes) -> int:
    """Lines a reader gets out of a truncated gzip stream before it ends."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return d.decompress(data).count(b"\n")


def _truncated_gz(tmp: Path) -> list[str]:
    full = _gz([dec(1000 + i) for i in range(5000)])
    cut = full[: len(full) // 2]
    (tmp / "d.jsonl.gz").write_bytes(cut)
    (tmp / "expected").write_text(
        f"line {_complete_lines(cut) + 1}: file: the gzip data is truncated"
    )
    return ["ingest", str(tmp / "d.jsonl.gz"), "--batch-size", "50"]


def _truncated_gz_first_chunk(tmp: Path) -> list[str]:
    full = _gz(new_decisions(400))
    (tmp / "d.jsonl.gz").write_bytes(full[: len(full) // 2])
    return ["ingest", str(tmp / "d.jsonl.gz"), "--kind", "decisions"]


def _truncated_csv_gz(tmp: Path) -> list[str]:
    head = "id,scenario_id,policy_version,scores,action,propensity\n"
    body = "".join(f"d{1000 + i},s{i},v1,0.6;0.3;0.1,reboot,0.5\n" for i in range(5000))
    full = gzip.compress((head + body).encode(), mtime=0)
    (tmp / "d.csv.gz").write_bytes(full[: len(full) * 2 // 3])
    return ["ingest", str(tmp / "d.csv.gz"), "--batch-size", "100"]


def _corrupt_gz(tmp: Path) -> list[str]:
    full = bytearray(_gz([dec(1000 + i) for i in range(5000)]))
    for j in range(len(full) // 2, len(full) // 2 + 64):
        full[j] ^= 0xA5
    (tmp / "d.jsonl.gz").write_bytes(bytes(full))
    return ["ingest", str(tmp / "d.jsonl.gz"), "--batch-size", "50"]


def _not_gzip(tmp: Path) -> list[str]:
    (tmp / "d.jsonl.gz").write_bytes(lines(new_decisions(5)))
    return ["ingest", str(tmp / "d.jsonl.gz")]


def _huge_value(tmp: Path) -> list[str]:
    rows = [dec(1000), dec(1001, action="x" * BIG)]
    (tmp / "d.jsonl").write_bytes(lines(rows))
    return ["ingest", str(tmp / "d.jsonl")]


def _huge_key(tmp: Path) -> list[str]:
    rows = [dec(1000), {**dec(1001), "k" * BIG: 1}]
    (tmp / "d.jsonl").write_bytes(lines(rows))
    return ["ingest", str(tmp / "d.jsonl")]


def _huge_column(tmp: Path) -> list[str]:
    head = "id,scenario_id,policy_version,scores,action,propensity," + "c" * BIG
    (tmp / "d.csv").write_text(head + "\nd1000,s1,v1,0.6;0.3;0.1,reboot,0.5,1\n")
    return ["ingest", str(tmp / "d.csv")]


def _huge_cell(tmp: Path) -> list[str]:
    head = "id,scenario_id,policy_version,scores,action,propensity\n"
    rows = f"d1000,s1,v1,0.6;0.3;0.1,reboot,0.5\nd1001,s2,v1,0.6;0.3;0.1,{'y' * BIG},0.5\n"
    (tmp / "d.csv").write_text(head + rows)
    return ["ingest", str(tmp / "d.csv")]


def _markup_value(text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "d.jsonl").write_bytes(lines([dec(1000), dec(1001, action=text)]))
        return ["ingest", str(tmp / "d.jsonl")]

    return make


def _markup_file_name(tmp: Path) -> list[str]:
    (tmp / "[bold red]x[red].txt").write_bytes(lines([dec(1000)]))
    return ["ingest", str(tmp / "[bold red]x[red].txt")]


def _markup_kind(tmp: Path) -> list[str]:
    return ["audit", "--kind", "x [/] y"]


def _markup_segment(tmp: Path) -> list[str]:
    return ["report", "--segment", "[/]"]


@dataclass
class Case:
    name: str
    make: Callable[[Path], list[str]]  # writes the input under the folder; npo's arguments
    code: int
    says: tuple[str, ...]  # each must appear, verbatim, in the output
    prepare: tuple[str, ...] = ()  # an npo command run first (may change the store)


CASES = [
    Case(
        "jsonl-unpaired-surrogate-in-a-later-chunk",
        _surrogate_in_chunk_3,
        2,
        (
            "line 101 (id='d1100'): scenario_id: holds an unpaired UTF-16 surrogate \\ud800 "
            "at character 2, which is not valid Unicode text",
            "--all-or-nothing: nothing was stored",
        ),
    ),
    Case(
        "jsonl-unpaired-surrogate-in-a-key",
        _surrogate_key,
        2,
        (
            "line 2 (id='d1001'): key: holds an unpaired UTF-16 surrogate \\udc00 at "
            "character 5, which is not valid Unicode text",
            "nothing was stored: 1 chunk(s) rejected (lines 1-3)",
        ),
    ),
    Case(
        # scores given as text are never coerced (issue 14, item 7): every line is named
        "parquet-list-of-text-scores",
        _parquet_list_of_text,
        2,
        (
            "line 1 (id='d1000'): scores[0]: must be a number, got str '0.6'",
            "--all-or-nothing: nothing was stored",
        ),
    ),
    Case(
        "parquet-missing-score-in-a-later-row-group",
        _parquet_null_score_in_later_row_group,
        2,
        (
            "line 101 (id='d1100'): scores[1]: ",
            "--all-or-nothing: nothing was stored; 1 problem(s) in 1 chunk(s) (lines 101-120)",
        ),
    ),
    Case(
        "jsonl-id-repeated-with-other-content-in-a-later-chunk",
        _id_repeated_in_chunk_3,
        2,
        (
            "line 121 (id='d1003'): action: id 'd1003' is also on line 4 of this file, with "
            "a different action; an event is never overwritten",
        ),
    ),
    Case(
        "jsonl-gz-truncated-after-many-chunks",
        _truncated_gz,
        2,
        (
            "(the file ends before the gzip end marker; was the download or copy complete?); "
            "the file was rejected before anything was stored",
            "nothing stored",
        ),
    ),
    Case(
        "jsonl-gz-truncated-kind-given",
        _truncated_gz_first_chunk,
        2,
        (": file: the gzip data is truncated", "nothing stored"),
    ),
    Case(
        "csv-gz-truncated",
        _truncated_csv_gz,
        2,
        (": file: the gzip data is truncated", "nothing stored"),
    ),
    Case(
        "jsonl-gz-corrupt",
        _corrupt_gz,
        2,
        (": file: the gzip data is corrupt", "nothing stored"),
    ),
    Case(
        "gz-name-but-not-gzip",
        _not_gzip,
        2,
        (
            "line 1: file: not gzip data although the name ends in .gz (rename the file or "
            "pass --format and a name without .gz)",
        ),
    ),
    Case(
        "jsonl-10-mb-value",
        _huge_value,
        2,
        (
            "line 2 (id='d1001'): action: unknown action 'xxxxxxxx",
            " more characters; 10,000,0",
            " in all]…xxxxxxxx",
        ),
    ),
    Case(
        "jsonl-10-mb-unknown-key",
        _huge_key,
        2,
        (
            "line 2 (id='d1001'): " + "k" * 53 + "…[9,999,920 more characters; 10,000,000 "
            "in all]…" + "k" * 27 + ": unknown field",
        ),
    ),
    Case(
        "csv-10-mb-column-name",
        _huge_column,
        2,
        (
            "line 1: header: malformed CSV: a cell holds more than 131,072 characters (the "
            "CSV reader's limit)",
        ),
    ),
    Case(
        "csv-10-mb-cell",
        _huge_cell,
        2,
        (
            "line 3 (id='d1001'): action: unknown action 'yyyyyyyy",
            " in all]…yyyyyyyy",
        ),
    ),
    Case(
        "jsonl-value-with-a-markup-closing-tag",
        _markup_value("x [/] y"),
        2,
        ("line 2 (id='d1001'): action: unknown action 'x [/] y'",),
    ),
    Case(
        "jsonl-value-that-is-markup",
        _markup_value("[bold red]x[/]"),
        2,
        ("line 2 (id='d1001'): action: unknown action '[bold red]x[/]'",),
    ),
    Case(
        "file-name-that-is-markup",
        _markup_file_name,
        2,
        ("[bold red]x[red].txt: nothing stored", "unknown file type '.txt'"),
    ),
    Case(
        "audit-kind-that-is-markup",
        _markup_kind,
        2,
        ("error: --kind: unknown kind 'x [/] y'; use a group (trigger, promotion,",),
    ),
    Case(
        "report-segment-that-is-markup",
        _markup_segment,
        0,
        ("Alignment report — segment [/]", "no labelled feedback in this selection"),
    ),
    Case(
        "audit-after-a-rollback-reason-that-is-markup",
        lambda tmp: ["audit", "--kind", "promotion"],
        0,
        # forced: v2 never served (the forcing is shown)
        ("policy v2 serves (was v1): x [/] y [bold]z — FORCED", "— rollback from v1"),
        prepare=("rollback", "v2", "--force", "--reason", "x [/] y [bold]z"),
    ),
]


def test_corpus_size() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 10


@pytest.fixture
def seeded(store_url: str, request: pytest.FixtureRequest) -> tuple[str, Any]:
    build_store(store_url, n=30)
    bindir = None
    if store_url.startswith("postgresql://"):
        bindir = request.getfixturevalue("postgres_server").bindir
    return store_url, bindir


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_named_and_stores_nothing(
    seeded: tuple[str, Any], tmp_path: Path, case: Case
) -> None:
    url, bindir = seeded
    if case.prepare:
        assert npo(*case.prepare, "--db", url).code == 0
    args = case.make(tmp_path)
    before = snapshot(url, bindir)
    res = npo(*args, "--db", url)
    assert res.exception is None, res.exception
    assert "Traceback" not in res.text
    assert res.code == case.code, res.text[:3000]
    says = list(case.says)
    if (tmp_path / "expected").exists():
        says.append((tmp_path / "expected").read_text())
    for text in says:
        assert text in res.text, (text, res.text[:3000])
    assert len(res.text) < 20_000  # a huge value is never echoed whole
    assert snapshot(url, bindir) == before
