"""The human output of ``npo report``, ``npo audit`` and ``npo tune`` at 80 columns,
pinned to golden text (``tests/cli/golden/*.txt``) on a store built from arithmetic only.

Audit times are the wall-clock times of the records and are masked. To regenerate after
an intended change: ``NPO_UPDATE_GOLDEN=1 pytest tests/cli/test_human_output.py``, then
read the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from cli_helpers import build_store, npo

GOLDEN = Path(__file__).parent / "golden"
_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( – \d\d:\d\d:\d\d)?(?= UTC)")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("human") / "npo.db")
    build_store(path)
    return path


def _pin(name: str, text: str) -> None:
    text = "\n".join(line.rstrip() for line in _TIME.sub("<time>", text).splitlines()) + "\n"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("NPO_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name}: output differs from {path}"


CASES = {
    "report": ["report"],
    "report-by-reviewer": ["report", "--by", "reviewer"],
    "audit": ["audit"],
    "audit-kind-trigger": ["audit", "--kind", "trigger", "--kind", "rejected"],
    "tune": ["tune"],
    "tune-risk": ["tune", "--objective", "risk", "--alpha", "0.2", "--p-min", "0.2"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_human_output_is_pinned_at_80_columns(db: str, name: str) -> None:
    res = npo(*CASES[name], "--db", db)
    assert res.code == 0 and res.exception is None, res.text
    assert max(len(line) for line in res.text.splitlines()) <= 80
    assert "…" not in res.out  # nothing is cut off (the audit's "…" line is on purpose)
    _pin(name, res.text)


def test_labels_name_the_json_fields(db: str) -> None:
    """Every number the human report shows is named as in the JSON document."""
    import json

    doc = json.loads(npo("report", "--db", db, "--json").out)
    human = npo("report", "--db", db).out
    for key in ("loss", "n_labelled", "n_abstained", "abstention interval", "weighted"):
        assert key in human
    o = doc["overall"]
    assert f"[{o['lower']:.4f}, {o['upper']:.4f}]" in human
    assert f"[{o['abstention_low']:.4f}, {o['abstention_high']:.4f}]" in human
    assert "on the loss" in human and "empirical-Bernstein" in human
