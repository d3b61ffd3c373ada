"""File and DataFrame ingestion: every format stores the same events; chunk semantics
(a bad chunk is rejected whole, the others stored, a re-run is idempotent); line numbers;
all-or-nothing; streaming in bounded chunks."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import ACTIONS, decision, feedback, write_jsonl

from npo.ingest import SourceRejected, infer_kind, ingest_file, ingest_frame
from npo.ingest.driver import _dry_run_supported
from npo.ingest.readers import iter_csv, iter_jsonl
from npo.ingest.schema import KindError, parse_vector_text
from npo.store import open_store


def _events(n_dec: int = 12, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    decs, fbs = [], []
    for i in range(n_dec):
        p = float(rng.uniform(0.05, 0.95))
        scores = [round(p, 6), round(1 - p, 6)]
        deferred = i % 4 == 0
        decs.append(
            decision(
                i,
                scores=scores,
                action="DEFER" if deferred else ("approve" if p > 0.5 else "reject"),
                propensity=1.0 if deferred else 0.25,
                segment=f"g{i % 3}",
                timestamp=f"2024-01-01T00:{i:02d}:00+00:00",
            )
        )
        for j in range(2):
            kind = "override" if deferred or j else "like"
            fbs.append(
                feedback(
                    f"{i}_{j}",
                    f"d{i}",
                    reviewer_id=f"r{j}",
                    kind=kind,
                    action="approve" if kind == "override" else None,
                    timestamp=f"2024-01-02T00:{i:02d}:{j:02d}+00:00",
                )
            )
    return decs, fbs


def _write_csv(path: Path, rows: list[dict[str, Any]], vector: str = "semicolon") -> Path:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    if vector == "spread" and "scores" in cols:
        at = cols.index("scores")
        cols[at : at + 1] = [f"score_{a}" for a in ACTIONS.actions]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            r = dict(r)
            if "scores" in r:
                s = r.pop("scores")
                if vector == "spread":
                    r.update({f"score_{a}": v for a, v in zip(ACTIONS.actions, s, strict=True)})
                elif vector == "json":
                    r["scores"] = json.dumps(s)
                else:
                    r["scores"] = ";".join(map(str, s))
            w.writerow(["" if r.get(c) is None else r[c] for c in cols])
    return path


def _spread(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    if "scores" in r:
        r.update({f"score_{a}": v for a, v in zip(ACTIONS.actions, r.pop("scores"), strict=True)})
    return r


def _snapshot(store: Any) -> dict[str, Any]:
    lab = store.labelled()
    order = np.argsort(lab.feedback_id)
    return {
        "counts": store.counts(),
        "feedback_id": np.asarray(lab.feedback_id)[order].tolist(),
        "decision_id": np.asarray(lab.decision_id)[order].tolist(),
        "decision": lab.decision[order].tolist(),
        "label": lab.label[order].tolist(),
        "kind": lab.kind[order].tolist(),
        "propensity": lab.propensity[order].tolist(),
        "scores": lab.scores[order].tolist(),
        "segment": [lab.segments[i] for i in lab.segment[order]],
        "reviewer": [lab.reviewers[i] for i in lab.reviewer[order]],
        "decision_time": lab.decision_time[order].tolist(),
        "feedback_time": lab.feedback_time[order].tolist(),
    }


def _fresh(tmp_path: Path, name: str) -> Any:
    return open_store(str(tmp_path / f"{name}.db"), ACTIONS)


def _frames(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


SOURCES = ["jsonl", "jsonl-spread", "jsonl.gz", "csv", "csv-json-lists", "csv-spread", "parquet"]
FRAMES = ["pandas", "polars", "arrow"]


@pytest.mark.parametrize("source", SOURCES + FRAMES)
def test_every_format_stores_the_same_events(tmp_path: Path, source: str) -> None:
    decs, fbs = _events()
    ref = _fresh(tmp_path, "ref")
    ref.ingest_decisions(decs)
    ref.ingest_feedback(fbs)
    want = _snapshot(ref)
    ref.close()

    store = _fresh(tmp_path, "x")
    d = tmp_path / "d"
    d.mkdir()
    results = []
    for name, rows in (("decisions", decs), ("feedback", fbs)):
        if source == "jsonl":
            results.append(ingest_file(store, write_jsonl(d / f"{name}.jsonl", rows)))
        elif source == "jsonl-spread":  # score_<action> keys instead of a scores list
            spread = [_spread(r) for r in rows]
            results.append(ingest_file(store, write_jsonl(d / f"{name}.ndjson", spread)))
        elif source == "jsonl.gz":
            p = d / f"{name}.jsonl.gz"
            with gzip.open(p, "wt") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            results.append(ingest_file(store, p))
        elif source.startswith("csv"):
            vector = {"csv": "semicolon", "csv-json-lists": "json", "csv-spread": "spread"}
            p = _write_csv(d / f"{name}.csv", rows, vector[source])
            results.append(ingest_file(store, p))
        elif source == "parquet":
            p = d / f"{name}.parquet"
            pq.write_table(pa.Table.from_pylist(rows), p)
            results.append(ingest_file(store, p, batch_size=5))
        elif source == "pandas":
            results.append(ingest_frame(store, pd.DataFrame(rows), batch_size=7))
        elif source == "polars":
            results.append(ingest_frame(store, pl.DataFrame(rows), batch_size=7))
        else:
            results.append(ingest_frame(store, pa.Table.from_pylist(rows)))
    assert [r.kind for r in results] == ["decisions", "feedback"]  # told from the columns
    assert all(r.ok for r in results), [r.to_dict() for r in results]
    assert [r.inserted for r in results] == [len(decs), len(fbs)]
    assert _snapshot(store) == want
    store.close()


def test_bad_chunk_is_rejected_whole_and_rerun_after_fix_is_idempotent(
    store: Any, tmp_path: Path
) -> None:
    rows = [feedback(10 + i) for i in range(10)]
    bad = list(rows)
    bad[4] = feedback(14, kind="override")  # line 5, in the 2nd chunk (lines 4-6)
    path = write_jsonl(tmp_path / "fb.jsonl", bad)
    before = store.counts()["feedback"]

    s = ingest_file(store, path, batch_size=3)
    assert (s.records, s.chunks, s.rejected_chunks) == (10, 4, 1)
    assert (s.inserted, s.duplicates, s.rejected, s.bad_lines) == (7, 0, 3, 1)
    assert [(e.line, e.field, e.item_id) for e in s.errors] == [(5, "action", "f14")]
    assert not s.ok
    assert store.counts()["feedback"] == before + 7

    write_jsonl(path, rows)  # fixed
    s = ingest_file(store, path, batch_size=3)
    assert s.ok and (s.inserted, s.duplicates, s.rejected) == (3, 7, 0)
    assert store.counts()["feedback"] == before + 10


def test_all_or_nothing_stores_nothing_when_any_line_is_bad(store: Any, tmp_path: Path) -> None:
    rows = [feedback(10 + i) for i in range(10)]
    rows[8] = feedback(18, kind="meh")
    path = write_jsonl(tmp_path / "fb.jsonl", rows)
    before = store.counts()
    s = ingest_file(store, path, batch_size=3, all_or_nothing=True)
    assert not s.ok and s.inserted == 0 and s.rejected == 10
    assert [(e.line, e.field) for e in s.errors] == [(9, "kind")]
    assert store.counts() == before

    rows[8] = feedback(18)
    write_jsonl(path, rows)
    s = ingest_file(store, path, batch_size=3, all_or_nothing=True)
    assert s.ok and s.inserted == 10


def test_line_numbers_count_blank_lines_and_multiline_csv_cells(store: Any, tmp_path: Path) -> None:
    p = tmp_path / "fb.jsonl"
    p.write_text(
        "\n".join(
            [
                json.dumps(feedback(10)),
                "",
                json.dumps(feedback(11)),
                "   ",
                "",
                json.dumps(feedback(12)),
                json.dumps(feedback(13, kind="override", action="DEFER")),
            ]
        )
    )  # no final newline
    s = ingest_file(store, p, batch_size=2)
    assert [(e.line, e.field, e.item_id) for e in s.errors] == [(7, "action", "f13")]
    assert s.inserted == 3

    c = tmp_path / "fb.csv"
    c.write_text(
        "id,decision_id,reviewer_id,kind,action,comment\n"
        'f20,d1,r1,like,,"first line\nsecond line"\n'
        "\n"
        "f21,d1,r1,abstain,approve,\n"
    )
    s = ingest_file(store, c)
    assert [(e.line, e.field, e.item_id) for e in s.errors] == [(5, "action", "f21")]


def test_dataframe_errors_name_the_row(store: Any) -> None:
    frame = pd.DataFrame([feedback(10), feedback(11), feedback(12, decision_id="nope")])
    before = store.counts()
    s = ingest_frame(store, frame)
    assert [(e.line, e.index, e.field) for e in s.errors] == [(3, 2, "decision_id")]
    assert store.counts() == before
    with pytest.raises(SourceRejected, match="unknown column"):
        ingest_frame(store, frame.assign(extra=1))
    with pytest.raises(SourceRejected, match="expected a pandas or polars DataFrame"):
        ingest_frame(store, [feedback(13)])
    mixed = pd.DataFrame([feedback(13), feedback(14)]).assign(reviewer_id=["r1", 7])
    with pytest.raises(SourceRejected, match="frame: cannot be converted to Arrow"):
        ingest_frame(store, mixed)
    assert store.counts() == before


def test_kind_inference() -> None:
    assert infer_kind(["id", "decision_id", "reviewer_id", "kind"]) == "feedback"
    assert infer_kind(["id", "scenario_id", "score_a", "score_b"]) == "decisions"
    assert infer_kind(["id", "features"]) == "scenarios"
    with pytest.raises(KindError, match="several kinds"):
        infer_kind(["id", "decision_id", "reviewer_id", "scenario_id", "scores"])
    with pytest.raises(KindError, match="cannot tell the kind"):
        infer_kind(["id", "colour"])


def test_vector_text_forms() -> None:
    assert parse_vector_text("0.25;0.75") == [0.25, 0.75]
    assert parse_vector_text(" [0.25, 0.75] ") == [0.25, 0.75]
    assert parse_vector_text("0.25, 0.75") == [0.25, 0.75]
    assert parse_vector_text("[]") == []
    with pytest.raises(ValueError, match="element 1: expected a number, got 'x'"):
        parse_vector_text("0.2;x")


def test_scenarios_with_feature_columns_and_epoch_times(store: Any, tmp_path: Path) -> None:
    c = tmp_path / "sc.csv"
    c.write_text("id,feature_age,feature_size,segment,timestamp\ns1,1.5,2,eu,1700000000\n")
    s = ingest_file(store, c)
    assert s.ok and s.kind == "scenarios" and s.inserted == 1
    c.write_text("id,features\ns2,1;2;3\ns3,\n")  # an empty cell: no features
    assert ingest_file(store, c).inserted == 2
    assert store.counts()["scenarios"] == 3


def test_readers_stream_in_bounded_chunks(tmp_path: Path) -> None:
    n, batch = 20_000, 1_000
    p = write_jsonl(tmp_path / "fb.jsonl", [feedback(i) for i in range(n)])
    it = iter_jsonl(p, batch)
    first = next(it)
    assert first.n == batch and first.position < p.stat().st_size / 4
    sizes = [first.n] + [c.n for c in it]
    assert max(sizes) == batch and sum(sizes) == n

    c = _write_csv(tmp_path / "fb.csv", [feedback(i) for i in range(n)])
    it = iter_csv(c, batch)
    first = next(it)
    assert first.n == batch and first.position < c.stat().st_size / 2
    assert int(first.lines[0]) == 2 and int(first.lines[-1]) == batch + 1
    assert sum(ch.n for ch in it) + batch == n


def test_progress_callback_reaches_the_total(store: Any, tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "fb.jsonl", [feedback(10 + i) for i in range(50)])
    seen: list[tuple[int, int]] = []
    ingest_file(store, p, batch_size=10, progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (p.stat().st_size,) * 2


def test_unknown_kind_and_format_options(store: Any, tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "fb.data", [feedback(10)])
    with pytest.raises(SourceRejected, match="unknown file type"):
        ingest_file(store, p)
    assert ingest_file(store, p, format="jsonl").inserted == 1
    with pytest.raises(SourceRejected, match="unknown kind 'votes'"):
        ingest_file(store, p, "votes", format="jsonl")
    with pytest.raises(SourceRejected, match="no such file"):
        ingest_file(store, tmp_path / "missing.csv")


def test_progress_bar_on_request(store: Any, tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "fb.jsonl", [feedback(10 + i) for i in range(20)])
    s = ingest_file(store, p, batch_size=5, progress=True)
    assert s.ok and s.inserted == 20


def test_csv_quoted_cells_across_chunk_boundaries(store: Any, tmp_path: Path) -> None:
    c = tmp_path / "fb.csv"
    c.write_text(
        "id,decision_id,reviewer_id,kind,action,comment\n"
        "f20,d1,r1,like,,\n"
        'f21,d1,r1,like,,"says ""no"",\nthen yes"\n'
        "f22,d1,r1,abstain,,\n"
        "f23,d1,r1,abstain,approve,\n"
        "\n"
        "f24,d1,r1,like,,plain\n"
    )
    s = ingest_file(store, c, batch_size=2)  # lines 2-3 extend to 4: the quote is open
    assert [(e.line, e.field, e.item_id) for e in s.errors] == [(6, "action", "f23")]
    assert (s.records, s.inserted, s.rejected, s.chunks) == (5, 3, 2, 3)


def test_unreadable_bytes_stop_reading_and_keep_earlier_chunks(store: Any, tmp_path: Path) -> None:
    c = tmp_path / "fb.csv"
    good = "".join(f"f{20 + i},d1,r1,like,\n" for i in range(6))  # lines 2-7
    head = b"id,decision_id,reviewer_id,kind,action\n"
    c.write_bytes(head + good.encode() + b"f9,d1,r\xff,like,\n")
    before = store.counts()["feedback"]
    s = ingest_file(store, c, batch_size=3)
    assert s.stopped_early and not s.ok and s.inserted == 6
    assert [(e.line, e.field, e.reason) for e in s.errors] == [(8, "file", "not valid UTF-8 text")]
    assert store.counts()["feedback"] == before + 6


def test_all_or_nothing_with_a_problem_only_the_store_can_see(store: Any, tmp_path: Path) -> None:
    rows = [feedback(10 + i) for i in range(9)]
    rows[7] = feedback(17, decision_id="d404")  # line 8, third chunk
    path = write_jsonl(tmp_path / "fb.jsonl", rows)
    before = store.counts()["feedback"]
    s = ingest_file(store, path, batch_size=3, all_or_nothing=True)
    assert not s.ok
    assert [(e.line, e.field) for e in s.errors] == [(8, "decision_id")]
    if _dry_run_supported(store.ingest_feedback):  # the first pass saw it: nothing stored
        assert store.counts()["feedback"] == before
    else:  # documented limit: the second pass stops there, earlier chunks stay stored
        assert s.stopped_early and s.inserted == 6
        assert store.counts()["feedback"] == before + 6


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_memory_is_bounded_by_the_chunk_not_the_file(tmp_path: Path, fmt: str) -> None:
    """Peak Python memory while ingesting 20,000 lines in chunks of 1,000 is a small
    fraction of the peak with the whole file as one chunk."""
    import tracemalloc

    n = 20_000
    rows = [feedback(i, reviewer_id=f"r{i % 7}") for i in range(n)]
    path = write_jsonl(tmp_path / "fb.jsonl", rows) if fmt == "jsonl" else None
    if path is None:
        path = _write_csv(tmp_path / "fb.csv", rows)
    warm = tmp_path / f"warm.{fmt}"
    warm_rows = [feedback(f"w{i}") for i in range(3)]
    _ = write_jsonl(warm, warm_rows) if fmt == "jsonl" else _write_csv(warm, warm_rows)
    peaks = {}
    for batch in (1_000, n):
        store = _fresh(tmp_path, f"m{batch}")
        store.ingest_decisions([decision(1)])
        ingest_file(store, warm)  # warm up: imports, caches
        tracemalloc.start()
        s = ingest_file(store, path, batch_size=batch)
        peaks[batch] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        store.close()
        assert s.ok and s.inserted == n
    assert peaks[1_000] < peaks[n] / 5, peaks


def test_crlf_line_endings(store: Any, tmp_path: Path) -> None:
    c = tmp_path / "fb.csv"
    c.write_bytes(
        b"id,decision_id,reviewer_id,kind,action\r\n"
        b"f20,d1,r1,like,\r\n"
        b"\r\n"
        b"f21,d1,r1,like,approve\r\n"
    )
    s = ingest_file(store, c)
    assert [(e.line, e.field) for e in s.errors] == [(4, "action")]
    j = tmp_path / "fb.jsonl"
    good, bad = json.dumps(feedback(30)), json.dumps(feedback(31, kind="x"))
    j.write_bytes(good.encode() + b"\r\n\r\n" + bad.encode())
    s = ingest_file(store, j)
    assert [(e.line, e.field) for e in s.errors] == [(3, "kind")]


@pytest.mark.parametrize("batch", [1, 2, 100])
def test_a_list_of_nulls_is_named_not_a_crash(store: Any, tmp_path: Path, batch: int) -> None:
    """pyarrow's JSON reader reads ``[null, null]`` as a ``list<null>`` whose child array is
    too short (any slice of it raises); such a chunk is read line by line and named."""
    rows = [decision(900), decision(901, action=[None, None]), decision(902)]
    path = write_jsonl(tmp_path / "dec.jsonl", rows)
    before = store.counts()
    s = ingest_file(store, path, batch_size=batch, all_or_nothing=True)
    assert not s.ok and s.inserted == 0
    assert [(e.line, e.field, e.item_id) for e in s.errors] == [(2, "action", "d901")]
    assert "must be a string" in s.errors[0].reason
    assert store.counts() == before
