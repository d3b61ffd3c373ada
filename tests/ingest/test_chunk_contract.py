"""The chunk contract for files of any size (issue 14, item 3).

Default: the chunks are stored in order, a bad chunk is rejected whole, the good chunks
before and after it are stored, and the summary says which lines were rejected.
``all_or_nothing``: nothing is stored unless the whole file is good, also when the
problem is only visible across chunks (an id re-sent with other content) or the file
changes between the checking and the storing pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ingest_helpers import decision, write_jsonl

from npo.ingest import ingest_file
from npo.ingest.readers import lone_surrogate


def _ids(store: Any) -> set[str]:
    return {str(i) for i in store.decisions().decision_id}


def test_default_mode_stores_good_chunks_before_and_after_a_bad_one(
    store: Any, tmp_path: Path
) -> None:
    rows: list[Any] = [decision(100 + i) for i in range(12)]
    rows[5] = json.dumps(decision(105)).replace('"s105"', '"s\\ud800"')  # chunk 2 of 3
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    before = _ids(store)
    s = ingest_file(store, path, batch_size=4)
    assert (s.inserted, s.rejected, s.stored_chunks, s.rejected_chunks) == (8, 4, 2, 1)
    assert s.rejected_lines == [(5, 8)] and s.unread_from_line is None and s.exit_code == 1
    [e] = s.errors
    assert (e.line, e.item_id, e.field) == (6, "d105", "scenario_id")
    assert "unpaired UTF-16 surrogate \\ud800" in e.reason
    new = _ids(store) - before
    assert new == {f"d{100 + i}" for i in (0, 1, 2, 3, 8, 9, 10, 11)}


def test_all_or_nothing_sees_an_id_resent_with_other_content_in_a_later_chunk(
    store: Any, tmp_path: Path
) -> None:
    rows = [decision(100 + i) for i in range(9)] + [decision(101, action="approve")]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    before = store.counts()
    s = ingest_file(store, path, batch_size=3, all_or_nothing=True)
    assert not s.ok and s.inserted == 0 and s.exit_code == 2
    assert [(e.line, e.item_id, e.field) for e in s.errors] == [(10, "d101", "action")]
    assert "is also on line 2 of this file" in s.errors[0].reason
    assert store.counts() == before


def test_all_or_nothing_accepts_identical_copies_across_chunks(store: Any, tmp_path: Path) -> None:
    rows = [decision(100 + i) for i in range(6)] + [decision(100), decision(104)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    s = ingest_file(store, path, batch_size=3, all_or_nothing=True)
    assert s.ok and (s.inserted, s.duplicates) == (6, 2)


def test_all_or_nothing_stores_nothing_when_the_file_changes_between_passes(
    store: Any, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [decision(100 + i) for i in range(6)])
    before = store.counts()
    changed = []

    def grow(done: int, total: int) -> None:  # a writer appends while we check
        if not changed:
            changed.append(True)
            with open(path, "a") as f:
                f.write(json.dumps(decision(999)) + "\n")

    s = ingest_file(store, path, batch_size=3, all_or_nothing=True, progress=grow)
    assert not s.ok and s.inserted == 0
    assert [(e.field, e.line) for e in s.errors] == [("file", None)]
    assert "the file changed while it was being checked" in s.errors[0].reason
    assert store.counts() == before


def _text_scores(path: Path, n: int, bad_row: int, row_group: int | None = None) -> Path:
    """A Parquet file of decisions whose scores are a list of text, one not a number."""
    scores = [["0.3", "0.7"]] * n
    scores[bad_row] = ["0.3", "high"]
    table = pa.table(
        {
            "id": [f"d{100 + i}" for i in range(n)],
            "scenario_id": [f"s{i}" for i in range(n)],
            "policy_version": ["v1"] * n,
            "scores": pa.array(scores, pa.list_(pa.string())),
            "action": ["reject"] * n,
            "propensity": [0.5] * n,
        }
    )
    pq.write_table(table, path, row_group_size=row_group)
    return path


def test_parquet_text_scores_are_pinned_to_their_row(store: Any, tmp_path: Path) -> None:
    path = _text_scores(tmp_path / "d.parquet", 6, bad_row=4, row_group=2)
    before = store.counts()
    s = ingest_file(store, path, batch_size=2, all_or_nothing=True)
    assert not s.ok and s.inserted == 0
    bad = [(e.line, e.item_id, e.field) for e in s.errors if "'high'" in e.reason]
    assert bad == [(5, "d104", "scores[1]")]
    assert store.counts() == before


def test_a_chunk_the_store_cannot_read_is_named_not_raised(store: Any, tmp_path: Path) -> None:
    """Text in a list of scores defeats the store's columnar path (an Arrow cast): the
    chunk is handed over again as records, whose checks name the bad record; the other
    chunk is judged on its own and nothing escapes as an exception."""
    path = _text_scores(tmp_path / "d.parquet", 4, bad_row=3)
    before = store.counts()["decisions"]
    s = ingest_file(store, path, batch_size=2)
    assert (3, 4) in s.rejected_lines
    assert any(
        (e.line, e.item_id, e.field) == (4, "d103", "scores[1]") and "'high'" in e.reason
        for e in s.errors
    ), s.errors
    assert store.counts()["decisions"] == before + s.inserted
    assert s.inserted + s.duplicates + s.rejected == s.records == 4


def test_lone_surrogate_names_the_field() -> None:
    assert lone_surrogate({"a": "ok", "b": ["x", "y\ud800"]}) == (
        "b[1]",
        "holds an unpaired UTF-16 surrogate \\ud800 at character 2, which is not valid "
        "Unicode text",
    )
    assert lone_surrogate({"a": "\U0001f600"}) is None  # a pair is text
    assert lone_surrogate({"k\udc00": 1})[0] == "key"  # type: ignore[index]
