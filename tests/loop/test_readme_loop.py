"""The README's "Use the loop from Python" example runs as written: a scikit-learn
classifier with string labels serves, names go in and out, and the scheduled retraining
refits a clone of it (a candidate of the same kind, with the same string classes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_loop_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use the loop from Python", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {"__name__": "readme"}
    exec(compile(block.group(1), "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "candidate" in out and "validation" in out
    status = scope["status"]
    assert status.counts["candidates"] >= 2  # type: ignore[attr-defined]
    assert scope["history"]  # the band's history, as the dashboard reads it
    from npo.policy import SklearnPolicy, load_policy
    from npo.store import open_store

    with open_store(str(tmp_path / "loop.db")) as store:
        candidates = [p for p in store.policies() if p.parent == "lr-1"]
        assert len(candidates) == status.counts["candidates"]  # type: ignore[attr-defined]
        refit = load_policy(candidates[0], trusted=())
        assert isinstance(refit, SklearnPolicy)
        served = scope["model"]
        assert type(refit.estimator) is type(served) and refit.estimator is not served
        assert list(refit.estimator.classes_) == ["approve", "reject"]
