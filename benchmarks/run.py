"""Run NPO's benchmark suite: write ``benchmarks/results.json`` and render ``docs/benchmarks.md``.

Usage::

    python benchmarks/run.py                 # every benchmark, full size (the figures)
    python benchmarks/run.py engine store    # only benchmarks whose name contains these
    python benchmarks/run.py --quick         # small sizes: a smoke run (benchmarks/.quick/)
    python benchmarks/run.py --render        # re-render the page from results.json only

Every ``benchmarks/bench_<name>.py`` defines ``run(quick: bool) -> dict`` with ``title``
and ``rows``, and declares which of its figures is compared with which peer in
``comparisons`` (see ``benchmarks/_bench.py``). The runner adds when, where, how long and
how loaded the machine was (load average before and after each module: other work shares
the cores), merges the results into ``results.json`` (a partial run keeps the other
benchmarks' last figures) and renders the page from it -- the page is never edited by hand.
A module that fails is recorded as failed (its error on the page) and the run exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
QUICK = HERE / ".quick"


def modules(only: list[str] | None = None) -> list[Path]:
    """The benchmark modules (``bench_*.py``), those matching ``only`` when given."""
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [b for b in found if any(o in b.stem for o in only)]
    return found


def load(path: Path) -> Any:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def machine() -> dict[str, Any]:
    return {
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_one(path: Path, quick: bool) -> dict[str, Any]:
    name = path.stem.removeprefix("bench_")
    before = _load()
    t0 = time.perf_counter()
    try:
        result = load(path).run(quick=quick)
        result.setdefault("comparisons", [])
    except Exception as exc:  # recorded, the other benchmarks still run
        result = {
            "title": name,
            "rows": [],
            "comparisons": [],
            "error": "".join(traceback.format_exception_only(exc)).strip(),
            "traceback": traceback.format_exc(limit=8),
        }
    result.update(
        name=name,
        date=time.strftime("%Y-%m-%d %H:%M"),
        quick=quick,
        seconds=round(time.perf_counter() - t0, 1),
        load_before=before,
        load_after=_load(),
    )
    return result


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------
def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v == 0:
            return "0"
        if abs(v) >= 1e5:
            return f"{v:,.0f}"
        return f"{v:.4g}" if abs(v) >= 1e-3 else f"{v:.2e}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in skip]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return [*out, ""]


def _comparison_rows(results: dict[str, Any], with_name: bool) -> list[str]:
    head = ["benchmark"] if with_name else []
    head += ["figure", "NPO", "peer", "peer's", "ratio NPO/peer", "target", "met"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        for c in r.get("comparisons", []):
            unit = c.get("unit", "")
            cells = [name] if with_name else []
            cells += [
                fmt(c["figure"]),
                f"{fmt(c['value'])} {unit}",
                fmt(c["peer"]),
                f"{fmt(c['peer_value'])} {unit}",
                f"{fmt(c['ratio'])}× ({c.get('better', 'higher')} is better)",
                fmt(c.get("target")),
                fmt(c.get("met")),
            ]
            out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def render(doc: dict[str, Any]) -> str:
    """The Markdown page of a results document."""
    results = doc.get("benchmarks", {})
    m = doc.get("machine", {})
    quick = any(r.get("quick") for r in results.values())
    lines = [
        "<!-- Generated by benchmarks/run.py from benchmarks/results.json: do not edit by "
        "hand. Regenerate with `python benchmarks/run.py` (or `--render` to re-render). -->",
        "",
        "# Benchmarks",
        "",
        "This page is generated by `python benchmarks/run.py` from `benchmarks/results.json`; "
        "it is never edited by hand. Every NPO figure stands beside a peer (or a floor) "
        "measured in the same run on the same data, with their ratio and the target. Run one "
        "benchmark with `python benchmarks/run.py NAME` (the others keep their last figures); "
        "`--quick` is a smoke run at small sizes (not these figures). How a benchmark module "
        "declares its figures and their peers: [`benchmarks/README.md`](../benchmarks/README.md).",
        "",
        f"Machine: {m.get('platform', '?')}, Python {m.get('python', '?')}, "
        f"{m.get('cpus', '?')} CPUs. The load average (1, 5, 15 min) before and after each "
        "benchmark is given with it: other processes sharing the cores slow figures down, "
        "peers and NPO alike (they are measured interleaved or back to back).",
        "",
    ]
    if quick:
        lines += ["**These are quick (smoke-run) figures, not the benchmark's.**", ""]
    lines += ["## Every figure beside its peer", ""]
    lines += _comparison_rows(results, with_name=True)
    missed = [
        (n, c["figure"])
        for n, r in results.items()
        for c in r.get("comparisons", [])
        if c.get("met") is False
    ]
    if missed:
        lines += ["Targets not met: " + "; ".join(f"{n}: {f}" for n, f in missed) + ".", ""]
    for name, r in results.items():
        lines += [f"## {r.get('title', name)}", ""]
        lines += [
            f"_`python benchmarks/run.py {name}`{' --quick' if r.get('quick') else ''}: "
            f"{r.get('date', '?')}, {fmt(r.get('seconds'))} s; load average "
            f"{r.get('load_before')} before, {r.get('load_after')} after._",
            "",
        ]
        if r.get("error"):
            lines += [f"**Failed**: `{r['error']}`", ""]
            continue
        if r.get("comparisons"):
            lines += _comparison_rows({name: r}, with_name=False)
        rows = r.get("rows", [])
        parts: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            parts.setdefault(str(row.get("part", "")), []).append(row)
        for part, prow in parts.items():
            if part:
                lines += [f"**{part}**", ""]
            lines += _table(prow, skip=("part",))
        for k, v in r.get("summary", {}).items():
            lines.append(f"- **{k}**: {fmt(v)}")
        if r.get("summary"):
            lines.append("")
        if r.get("notes"):
            lines += [str(r["notes"]).strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def write(doc: dict[str, Any], results: Path, page: Path) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(doc, indent=1, default=str, allow_nan=True) + "\n")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(doc))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("only", nargs="*", help="substrings of benchmark names to run")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--out", type=Path, help="folder for results.json and benchmarks.md")
    ap.add_argument("--render", action="store_true", help="only re-render the page")
    args = ap.parse_args(argv)
    if args.out is not None:
        results, page = args.out / "results.json", args.out / "benchmarks.md"
    elif args.quick:
        results, page = QUICK / "results.json", QUICK / "benchmarks.md"
    else:
        results, page = RESULTS, PAGE
    doc: dict[str, Any] = {"benchmarks": {}}
    if results.exists():
        doc = json.loads(results.read_text())
    if args.render:
        write(doc, results, page)
        print(f"rendered {page}")
        return 0
    doc["machine"] = machine()
    failed = []
    for path in modules(args.only):
        name = path.stem.removeprefix("bench_")
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        result = run_one(path, args.quick)
        doc["benchmarks"][name] = result
        doc["benchmarks"] = dict(sorted(doc["benchmarks"].items()))
        write(doc, results, page)  # after each module: a long run keeps what it measured
        if result.get("error"):
            failed.append(name)
            print(f"   FAILED: {result['error']}", flush=True)
        for c in result.get("comparisons", []):
            print(
                f"   {c['figure']}: {fmt(c['value'])} {c['unit']} vs {c['peer']} "
                f"{fmt(c['peer_value'])} -> {fmt(c['ratio'])}x, met: {fmt(c['met'])}"
            )
        print(f"   {result['seconds']} s", flush=True)
    print(f"wrote {results} and {page}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
