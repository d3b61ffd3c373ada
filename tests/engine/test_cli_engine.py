"""Bad options of ``--data`` / ``--engine`` / ``--scheduler`` get a clear error (exit 2)
naming the option; a missing Dask names the extra that installs it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from npo.cli.main import app


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("cmd", [["report"], ["tune"], ["validate", "v2"]])
def test_engine_options_without_data_are_refused(exported: Any, cmd: list[str]) -> None:
    store, _ = exported
    res = _run(*cmd, "--db", store.url, "--engine", "dask")
    assert res.exit_code == 2
    assert "--engine" in res.stderr and "--data" in res.stderr
    res = _run(*cmd, "--db", store.url, "--scheduler", "tcp://127.0.0.1:1")
    assert res.exit_code == 2 and "--scheduler" in res.stderr


def test_unknown_engine_and_bad_folders_are_named(exported: Any, tmp_path: Path) -> None:
    _, out = exported
    res = _run("report", "--data", str(out), "--engine", "spark")
    assert res.exit_code == 2 and "--engine" in res.stderr and "spark" in res.stderr
    res = _run("report", "--data", str(tmp_path))
    assert res.exit_code == 2 and "--data" in res.stderr and "npo export" in res.stderr
    res = _run("report", "--data", str(tmp_path / "nowhere"), "--json")
    assert res.exit_code == 2 and '"--data"' in res.stdout
    res = _run("report", "--data", str(out), "--interval", "bootstrap")
    assert res.exit_code == 2 and "--interval" in res.stderr
    res = _run("tune", "--data", str(out), "--objective", "risk", "--p-min", "0.05")
    assert res.exit_code == 0  # in process: the tuner's own risk mode
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        res = _run(
            "tune", "--data", str(out), "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"
        )
    assert res.exit_code == 2 and "--scheduler" in res.stderr and "cannot reach" in res.stderr


def test_without_dask_the_message_names_the_extra(
    exported: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = exported
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails
    res = _run("report", "--data", str(out), "--engine", "dask")
    assert res.exit_code == 2
    assert "pip install 'npo[dask]'" in res.stderr


def test_local_engine_report_needs_no_store(exported: Any, tmp_path: Path) -> None:
    _, out = exported
    res = _run("report", "--data", str(out), "--db", str(tmp_path / "none.db"))
    assert res.exit_code == 0, res.output
    assert "read from" in res.stdout and "local engine" in res.stdout
    assert not (tmp_path / "none.db").exists()
