"""Run NPO's benchmarks and write their figures to ``benchmarks/results/``.

Usage::

    python benchmarks/run.py            # every benchmark, full size
    python benchmarks/run.py --quick    # small sizes, to check they run (results/quick/)
    python benchmarks/run.py ingest     # only benchmarks whose name contains "ingest"

Each ``benchmarks/bench_<name>.py`` defines ``run(quick: bool) -> dict`` returning a
JSON-able dict with at least ``title`` and ``rows`` (a list of flat dicts: one row per
system measured, peers side by side in the same run). The runner writes
``results/<name>.json`` and regenerates ``results/RESULTS.md`` from every JSON present;
``--quick`` writes under ``results/quick/`` (git-ignored), so a smoke run never replaces
the full-size figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_markdown(folder: Path = RESULTS) -> Path:
    lines = ["# Benchmark results", "", "Regenerate with `python benchmarks/run.py`.", ""]
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        lines += [f"## {r['title']}", "", f"_{r.get('machine', '')}; {r.get('date', '')}_", ""]
        rows = r.get("rows", [])
        if rows:
            cols = list(dict.fromkeys(k for row in rows for k in row))
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "---|" * len(cols))
            for row in rows:
                lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |")
            lines.append("")
        for k, v in r.get("summary", {}).items():
            lines.append(f"- **{k}**: {_fmt(v)}")
        if r.get("notes"):
            lines += ["", r["notes"]]
        lines.append("")
    out = folder / "RESULTS.md"
    out.write_text("\n".join(lines))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("only", nargs="*", help="substrings of benchmark names to run")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args(argv)
    folder = RESULTS / "quick" if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    benches = sorted(HERE.glob("bench_*.py"))
    if args.only:
        benches = [b for b in benches if any(o in b.stem for o in args.only)]
    for b in benches:
        name = b.stem.removeprefix("bench_")
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        t0 = time.perf_counter()
        result = _load(b).run(quick=args.quick)
        result.setdefault("machine", f"{platform.machine()}, {platform.python_version()}")
        result["date"] = time.strftime("%Y-%m-%d")
        result["quick"] = args.quick
        result["seconds"] = round(time.perf_counter() - t0, 1)
        (folder / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        for row in result.get("rows", []):
            print("   ", {k: _fmt(v) for k, v in row.items()})
        for k, v in result.get("summary", {}).items():
            print(f"    {k}: {_fmt(v)}")
    print(f"wrote {write_markdown(folder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
