"""Property: whatever lines a JSONL or CSV file holds -- values of any type, any Unicode,
huge values, unpaired surrogates, text that looks like ``rich`` markup -- ``npo ingest``
and ``npo report`` answer with exit code 0 or 2, never a traceback, and leave the store
byte-for-byte unchanged whenever they exit with 2 ("nothing stored").

Bounded for the default run (``max_examples``, no deadline, derandomised so that CI sees
the same examples every time).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import npo, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npo.domain import ActionSpace
from npo.store import open_store

ACTIONS = ActionSpace(["approve", "reject"])
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MARKUP = st.sampled_from(
    ["[/]", "x [/] y", "[bold red]x[/]", "[link=http://x]y[/link]", "\\[b]", "[", "]", "[/red]"]
)
HUGE = st.integers(10_000, 300_000).map(lambda n: "z" * n)
TEXT = st.one_of(st.text(max_size=40), MARKUP, HUGE, st.sampled_from(["approve", "reject"]))
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
VALUE = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip

DECISION = {
    "id": "d{i}",
    "scenario_id": "s{i}",
    "policy_version": "v1",
    "scores": [0.3, 0.7],
    "action": "reject",
    "propensity": 0.5,
    "timestamp": "2024-01-01T00:00:00+00:00",
}


@st.composite
def records(draw: Any) -> dict[str, Any]:
    i = draw(st.integers(0, 30))
    rec: dict[str, Any] = {
        k: (v.format(i=i) if isinstance(v, str) else v) for k, v in DECISION.items()
    }
    for k in draw(st.lists(st.sampled_from(sorted(rec)), max_size=3, unique=True)):
        if draw(st.booleans()):
            rec[k] = draw(VALUE)
        else:
            del rec[k]
    for k, v in draw(st.dictionaries(TEXT, VALUE, max_size=2)).items():
        rec[k] = v
    return rec


def _json_line(draw: Any) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=60))  # not JSON at all
    line = json.dumps(draw(records()), ensure_ascii=draw(st.booleans()))
    if kind == 1:  # an unpaired surrogate escape somewhere in a string
        line = line.replace('"s', '"\\ud83ds', 1)
    return line


@st.composite
def jsonl_files(draw: Any) -> bytes:
    n = draw(st.integers(1, 12))
    return "\n".join(_json_line(draw) for _ in range(n)).encode("utf-8", "surrogatepass") + b"\n"


@st.composite
def csv_files(draw: Any) -> bytes:
    header = list(DECISION)
    if draw(st.booleans()):
        header.append(draw(st.one_of(MARKUP, st.text(min_size=1, max_size=20))))
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header)
    for _ in range(draw(st.integers(1, 10))):
        w.writerow([draw(st.one_of(TEXT, st.just("0.3;0.7"))) for _ in header])
    return out.getvalue().encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a few events, copied afresh for every example."""
    path = tmp_path_factory.mktemp("prop") / "template.db"
    with open_store(str(path), ACTIONS) as s:
        s.ingest_decisions(
            [
                {k: (v.format(i=i) if isinstance(v, str) else v) for k, v in DECISION.items()}
                for i in range(5)
            ]
        )
        s.ingest_feedback([{"id": "f1", "decision_id": "d1", "reviewer_id": "r1", "kind": "like"}])
    return path


def _check(template: Path, content: bytes, suffix: str, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "npo.db"
        shutil.copy(template, db)
        src = Path(d) / f"in{suffix}"
        src.write_bytes(content)
        before = snapshot(str(db))
        res = npo("ingest", str(src), "--db", str(db), *extra)
        assert res.exception is None, repr(res.exception)
        assert "Traceback" not in res.text and "pydantic.dev" not in res.text
        assert res.code in (0, 2), (res.code, res.text[:2000])
        if res.code == 2:
            assert snapshot(str(db)) == before
        assert len(res.text) < 100_000  # huge values are never echoed whole
        for args in (["report"], ["report", "--json"], ["report", "--by", "action"]):
            rep = npo(*args, "--db", str(db))
            assert rep.exception is None, repr(rep.exception)
            assert rep.code in (0, 2) and "Traceback" not in rep.text, rep.text[:2000]
            if "--json" in args and rep.code == 0:
                json.loads(rep.out)


@SETTINGS
@given(content=jsonl_files())
def test_any_jsonl_gets_an_answer_never_a_traceback(template: Path, content: bytes) -> None:
    _check(template, content, ".jsonl", [])


@SETTINGS
@given(content=jsonl_files(), batch=st.integers(1, 4))
def test_any_jsonl_all_or_nothing_in_small_chunks(
    template: Path, content: bytes, batch: int
) -> None:
    _check(template, content, ".jsonl", ["--all-or-nothing", "--batch-size", str(batch)])


@SETTINGS
@given(content=csv_files())
def test_any_csv_gets_an_answer_never_a_traceback(template: Path, content: bytes) -> None:
    _check(template, content, ".csv", [])
