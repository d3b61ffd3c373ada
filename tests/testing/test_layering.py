"""The layering contract of ``pyproject.toml`` (import-linter), run by the test-suite: the
statistical core imports neither the store, the CLI, the service nor the simulation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports not installed: pip install -e '.[dev]' (import-linter)")
    return subprocess.run(
        [exe, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_statistical_core_keeps_its_layering() -> None:
    res = _lint()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_the_linter_does_report_a_broken_contract(tmp_path: Path) -> None:
    """The same machinery fails on an import that exists (the loop uses the monitors)."""
    cfg = tmp_path / "contracts.toml"
    cfg.write_text(
        '[tool.importlinter]\nroot_package = "npo"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "deliberately wrong"\ntype = "forbidden"\n'
        'source_modules = ["npo.loop"]\nforbidden_modules = ["npo.monitor"]\n'
    )
    res = _lint("--config", str(cfg))
    assert res.returncode != 0 and "BROKEN" in res.stdout
