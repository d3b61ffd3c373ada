"""Bad-input corpus for files: every malformed JSONL / CSV / Parquet case gets its precise
error (line, field, reason) and leaves the store exactly as it was.

(The API-level cases -- records and batches handed straight to a store -- are in
``tests/store``.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import decision, feedback

from npo.errors import ItemError
from npo.ingest import SourceRejected, ingest_file

FB_HEADER = "id,decision_id,reviewer_id,kind,action,timestamp"
DEC_HEADER = "id,scenario_id,policy_version,scores,action,propensity"


def jl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def csv(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def parquet_with(columns: dict[str, list[Any]]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        pq.write_table(pa.table(columns), path)

    return write


@dataclass
class Case:
    name: str
    file: str  # file name (its suffix picks the format)
    content: str | bytes | Callable[[Path], None]
    line: int | None  # the line the error must name (None: the file as a whole)
    field: str
    reason: str  # a fragment the reason must contain
    kind: str | None = None
    whole_source: bool = False  # rejected before reading records (SourceRejected)


CASES = [
    Case(
        "jsonl-malformed-json",
        "fb.jsonl",
        jl(feedback(10), '{"id": "f11", "decision_id": "d1", "reviewer_id": "r1",', feedback(12)),
        2,
        "json",
        "malformed JSON",
    ),
    Case(
        "jsonl-not-an-object",
        "fb.jsonl",
        jl(feedback(10), feedback(11), "[1, 2, 3]"),
        3,
        "json",
        "expected a JSON object, got an array",
    ),
    Case(
        "jsonl-wrong-type",
        "dec.jsonl",
        jl(decision(10), decision(11), decision(12, propensity="high")),
        3,
        "propensity",
        "must be a number",
    ),
    Case(
        "csv-wrong-type",
        "dec.csv",
        csv(DEC_HEADER, "d10,s10,v1,0.3;0.7,reject,0.5", "d11,s11,v1,0.3;0.7,reject,abc"),
        3,
        "propensity",
        "expected a number, got 'abc'",
    ),
    Case(
        "csv-missing-required-column",
        "fb.csv",
        csv("id,decision_id,kind", "f10,d1,like"),
        1,
        "reviewer_id",
        "required column is missing",
        kind="feedback",
        whole_source=True,
    ),
    Case(
        "jsonl-missing-required-field",
        "fb.jsonl",
        jl(feedback(10), {k: v for k, v in feedback(11).items() if k != "reviewer_id"}),
        2,
        "reviewer_id",
        "field required",
    ),
    Case(
        "csv-unknown-feedback-kind",
        "fb.csv",
        csv(FB_HEADER, "f10,d1,r1,like,,", "f11,d1,r2,thumbsup,,"),
        3,
        "kind",
        "'like', 'override' or 'abstain'",
    ),
    Case(
        "jsonl-override-without-action",
        "fb.jsonl",
        jl(feedback(10), feedback(11, kind="override")),
        2,
        "action",
        "an override must name the right action",
    ),
    Case(
        "csv-nan-score",
        "dec.csv",
        csv(DEC_HEADER, "d10,s10,v1,0.3;0.7,reject,0.5", "d11,s11,v1,0.3;nan,reject,0.5"),
        3,
        "scores[1]",
        "must be finite",
    ),
    Case(
        "csv-propensity-zero",
        "dec.csv",
        csv(DEC_HEADER, 'd10,s10,v1,"[0.3, 0.7]",reject,0', "d11,s11,v1,0.3;0.7,reject,0.5"),
        2,
        "propensity",
        "(0, 1]",
    ),
    Case(
        "csv-unknown-decision-id",
        "fb.csv",
        csv(FB_HEADER, "f10,d1,r1,like,,", "f11,d404,r1,like,,"),
        3,
        "decision_id",
        "unknown decision 'd404'",
    ),
    Case(
        "jsonl-conflicting-resend",
        "fb.jsonl",
        jl(feedback(10), feedback(1, kind="override", action="approve")),
        2,
        "kind",
        "already stored with different",
    ),
    Case(
        "jsonl-conflicting-ids-within-file",
        "fb.jsonl",
        jl(feedback(10), feedback(11), feedback(10, reviewer_id="r9")),
        3,
        "reviewer_id",
        "twice",
    ),
    Case("empty-file", "fb.jsonl", "", None, "file", "the file is empty", whole_source=True),
    Case(
        "unknown-file-type",
        "fb.txt",
        jl(feedback(10)),
        None,
        "file",
        "unknown file type '.txt'",
        whole_source=True,
    ),
    Case(
        "csv-wrong-number-of-cells",
        "fb.csv",
        csv(FB_HEADER, "f10,d1,r1,like,,", "f11,d1,r1,like"),
        3,
        "row",
        "expected 6 cells as in the header, got 4",
    ),
    Case(
        "csv-malformed-quoting",
        "fb.csv",
        csv(FB_HEADER, "f10,d1,r1,like,,", 'f11,d1,"r1"x,like,,', "f12,d1,r1,like,,"),
        3,
        "row",
        "malformed CSV",
    ),
    Case(
        "csv-header-only",
        "fb.csv",
        csv(FB_HEADER),
        1,
        "file",
        "holds no records",
        whole_source=True,
    ),
    Case(
        "csv-score-column-for-unknown-action",
        "dec.csv",
        csv(
            "id,scenario_id,policy_version,score_approve,score_reject,score_escalate,action,"
            "propensity",
            "d10,s10,v1,0.3,0.7,0.0,reject,0.5",
        ),
        1,
        "score_escalate",
        "unknown action 'escalate'",
        whole_source=True,
    ),
    Case(
        "parquet-unknown-column",
        "fb.parquet",
        parquet_with(
            {
                "id": ["f10"],
                "decision_id": ["d1"],
                "reviewer_id": ["r1"],
                "kind": ["like"],
                "verdict": ["yes"],
            }
        ),
        None,
        "verdict",
        "unknown column for feedback",
        whole_source=True,
    ),
    Case(
        "parquet-like-on-deferred-decision",
        "fb.parquet",
        parquet_with(
            {
                "id": ["f10", "f11"],
                "decision_id": ["d1", "d2"],
                "reviewer_id": ["r1", "r1"],
                "kind": ["like", "like"],
            }
        ),
        2,
        "kind",
        "deferred",
    ),
    Case(
        "jsonl-unknown-key",
        "fb.jsonl",
        jl(feedback(10), feedback(11, verdict="yes")),
        2,
        "verdict",
        "unknown field",
    ),
    Case(
        "jsonl-bad-timestamp",
        "fb.jsonl",
        jl(feedback(10), feedback(11, timestamp="yesterday")),
        2,
        "timestamp",
        "ISO-8601",
    ),
    Case(
        "csv-override-names-unknown-action",
        "fb.csv",
        csv(FB_HEADER, "f10,d1,r1,override,escalate,"),
        2,
        "action",
        "unknown action 'escalate'",
    ),
    Case(
        "jsonl-kind-not-inferable",
        "x.jsonl",
        jl({"id": "x1", "colour": "red"}),
        None,
        "kind",
        "cannot tell the kind",
        whole_source=True,
    ),
]


def _write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / case.file
    if callable(case.content):
        case.content(path)
    elif isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        path.write_text(case.content)
    return path


def test_corpus_has_enough_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 15
    assert {Path(c.file).suffix for c in CASES} >= {".jsonl", ".csv", ".parquet"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_precise_error_and_store_is_unchanged(
    store: Any, tmp_path: Path, case: Case
) -> None:
    before = store.counts()
    path = _write(tmp_path, case)
    errors: list[ItemError]
    if case.whole_source:
        with pytest.raises(SourceRejected) as exc:
            ingest_file(store, path, case.kind)
        errors = exc.value.errors
    else:
        summary = ingest_file(store, path, case.kind)
        assert not summary.ok
        assert summary.inserted == 0 and summary.rejected == summary.records
        assert summary.bad_lines == 1
        errors = summary.errors
    assert len(errors) == 1, errors
    e = errors[0]
    assert (e.line, e.field) == (case.line, case.field), e
    assert case.reason in e.reason, e
    assert store.counts() == before
