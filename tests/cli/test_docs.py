"""The examples in ``docs/formats.md`` stay true: its scenario file loads, its ``--set``
line runs, and the README's command table names the commands that exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from cli_helpers import npo

from npo.simulation import load_scenario

DOCS = Path(__file__).parents[2] / "docs"


def test_the_scenario_file_example_loads(tmp_path: Path) -> None:
    text = (DOCS / "formats.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    path = tmp_path / "scenario.toml"
    path.write_text(block.group(1))
    spec = load_scenario(path)
    assert spec.world.actions == ["approve", "reject", "escalate"]
    assert spec.reviewers.delay.kind == "geometric" and spec.costs == {"reject": {"approve": 5.0}}


def test_the_set_example_runs(tmp_path: Path) -> None:
    text = (DOCS / "formats.md").read_text(encoding="utf-8")
    line = re.search(r"```bash\n(npo simulate .*?)```", text, re.S)
    assert line is not None
    args = shlex.split(line.group(1).replace("\\\n", " "))[1:]
    res = npo(*args, "--steps", "30", "--out", str(tmp_path / "s.csv"), "--json")
    assert res.code == 0, res.text
    assert json.loads(res.out)["lambda"] == 0.12


def test_unknown_set_key_names_the_known_ones() -> None:
    res = npo("simulate", "stationary", "--steps", "20", "--set", "retrain.min_feedbak=1")
    assert res.code == 2
    assert (
        "error: --set retrain.min_feedbak: 'min_feedbak' is not a setting of retrain; "
        "known: min_feedback, min_steps_between" in res.err
    )
