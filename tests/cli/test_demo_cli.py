"""`npo demo` end to end (small sizes), and `npo audit verify` on the store it produced:
intact -> exit 0; one audit row edited with plain SQL -> exit 1; a deleted row -> exit 1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from npo.cli.main import app

runner = CliRunner()


def _demo(out: Path) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(
        app, ["demo", "--out", str(out), "--steps", "80", "--per-step", "20", "--json"]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_demo_writes_report_store_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    doc = _demo(out)
    assert doc["ok"] and Path(doc["store"]).exists()
    for name in ("report.md", "summary.json", "series.parquet", "loss.png", "triggers.png",
                 "rates.png", "versions.png"):  # fmt: skip
        p = out / name
        assert p.exists() and p.stat().st_size > 0, name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = doc["summary"]
    assert s["scenario"] == "incident-remediation" and s["steps"] == 80
    assert s["counts"]["decisions"] == 80 * 20
    assert s["meta_alignment"]["error_rate"] <= s["meta_alignment"]["bound"]
    report = (out / "report.md").read_text()
    assert (
        "## What happened and why" in report and "![alignment loss vs lambda](loss.png)" in report
    )
    import pyarrow.parquet as pq

    assert pq.read_table(out / "series.parquet").num_rows == 80
    # human output, and a second run into the same folder replaces the store
    res = runner.invoke(app, ["demo", "--out", str(out), "--steps", "40", "--per-step", "10"])
    assert res.exit_code == 0, res.output
    assert "NPO demo" in res.output and "report.md" in res.output
    res = runner.invoke(app, ["audit", "--db", str(out / "npo.db"), "--json", "--limit", "1000"])
    kinds = {r["kind"] for r in json.loads(res.output)}
    assert {"policy.activated", "thresholds.activated", "loop.decisions"} <= kinds


def test_audit_verify_detects_an_edited_or_deleted_row(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    db = Path(_demo(out)["store"])
    ok = runner.invoke(app, ["audit", "verify", "--db", str(db), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True
    # someone edits one audit row with plain SQL (dropping the append-only guard first)
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute(
        "UPDATE audit SET payload = replace(payload, '\"n\":', '\"n\": 1') WHERE seq = "
        "(SELECT min(seq) FROM audit WHERE kind = 'loop.decisions')"
    )
    assert con.total_changes == 1
    con.commit()
    con.close()
    bad = runner.invoke(app, ["audit", "verify", "--db", str(db)])
    assert bad.exit_code == 1 and "TAMPERED" in bad.output
    # a fresh demo store, then one row deleted
    db2 = Path(_demo(tmp_path / "demo2")["store"])
    con = sqlite3.connect(db2)
    con.execute("DROP TRIGGER audit_no_delete")
    con.execute("DELETE FROM audit WHERE seq = 3")
    con.commit()
    con.close()
    bad = runner.invoke(app, ["audit", "verify", "--db", str(db2), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.output)["ok"] is False
