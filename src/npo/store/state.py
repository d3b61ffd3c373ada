"""Small state primitives the loop checkpoints into, and its audited configuration.

- **State**: key -> (version, JSON value). :func:`put` is a compare-and-set when given
  ``expect_version`` (0: the key must not exist yet): one conditional ``UPDATE`` /
  ``INSERT … ON CONFLICT DO NOTHING``, atomic on both backends, so of two writers that read
  version ``v`` exactly one succeeds and the other gets :class:`~npo.errors.StateConflict`.
- **Leases**: one upsert whose ``WHERE`` takes the row only if it is ours or expired by the
  *database's* clock (processes' clocks may disagree; the database's is one). The row is
  locked by the statement itself (SQLite: the write transaction; PostgreSQL: the row lock
  of ``ON CONFLICT DO UPDATE``), so two processes can never both hold a lease. ``fence``
  grows at every change of holder.
- **Configuration**: append-only versions of a JSON-able mapping, each audited.
- **Monitor history**: append-only points of the loss monitor (one per loop checkpoint that
  changed it), read back evenly thinned for plotting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from npo.domain.rules import from_us, now_us, to_us
from npo.errors import ItemError, LeaseLost, StateConflict, ValidationFailed
from npo.store.audit import normalise_payload
from npo.store.base import ConfigRecord, Lease, MonitorPoint, StateValue


def _key(name: str, field: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\x00" in name:
        raise ValidationFailed(
            [
                ItemError(
                    0, field, f"must be a non-empty string of at most 200 characters, got {name!r}"
                )
            ],
            what=field,
        )
    return name


def _value_json(value: Any, what: str) -> str:
    _, text = normalise_payload({"v": value}, what)
    return text


def get_state(store: Any, key: str) -> StateValue | None:
    _key(key, "key")
    row = store._x("SELECT version, value FROM state WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return StateValue(key, int(row[0]), json.loads(row[1])["v"])


def put_state(store: Any, key: str, value: Any, expect_version: int | None) -> int:
    _key(key, "key")
    text = _value_json(value, "state")
    if expect_version is not None and (
        isinstance(expect_version, bool) or int(expect_version) != expect_version
    ):
        raise ValidationFailed(
            [ItemError(0, "expect_version", f"must be a whole number, got {expect_version!r}")],
            "state",
        )
    now = store._dialect.now_us
    with store.transaction():
        if expect_version is None:
            row = store._x(
                f"INSERT INTO state VALUES (?, 1, ?, {now}) ON CONFLICT (key) DO UPDATE SET "
                f"version = state.version + 1, value = excluded.value, updated_us = {now} "
                "RETURNING version",
                (key, text),
            ).fetchone()
            return int(row[0])
        if expect_version == 0:
            cur = store._x(
                f"INSERT INTO state VALUES (?, 1, ?, {now}) ON CONFLICT (key) DO NOTHING",
                (key, text),
            )
            new = 1
        else:
            cur = store._x(
                f"UPDATE state SET version = version + 1, value = ?, updated_us = {now} "
                "WHERE key = ? AND version = ?",
                (text, key, int(expect_version)),
            )
            new = int(expect_version) + 1
        if cur.rowcount != 1:
            found = store._x("SELECT version FROM state WHERE key = ?", (key,)).fetchone()
            raise StateConflict(key, expect_version, None if found is None else int(found[0]))
        return new


def _ttl_us(ttl_s: float) -> int:
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, (int, float))
        or not (math.isfinite(ttl_s) and 0 < ttl_s <= 86400 * 365)
    ):
        raise ValidationFailed(
            [ItemError(0, "ttl_s", f"must be a number of seconds in (0, 1 year], got {ttl_s!r}")],
            "lease",
        )
    return round(ttl_s * 1e6)


def _lease(row: tuple[Any, ...], name: str) -> Lease:
    holder, expires, fence = row
    return Lease(name, holder, from_us(int(expires)), int(fence))


def acquire_lease(store: Any, name: str, holder: str, ttl_s: float) -> Lease | None:
    _key(name, "name")
    _key(holder, "holder")
    ttl = _ttl_us(ttl_s)
    now = store._dialect.now_us
    with store.transaction():
        row = store._x(
            f"INSERT INTO leases VALUES (?, ?, {now} + ?, 1, {now}) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_us = excluded.expires_us, "
            "fence = CASE WHEN leases.holder = excluded.holder AND leases.expires_us > "
            f"{now} THEN leases.fence ELSE leases.fence + 1 END, "
            "acquired_us = CASE WHEN leases.holder = excluded.holder AND leases.expires_us > "
            f"{now} THEN leases.acquired_us ELSE excluded.acquired_us END "
            f"WHERE leases.holder = excluded.holder OR leases.expires_us <= {now} "
            "RETURNING holder, expires_us, fence",
            (name, holder, ttl),
        ).fetchone()
    return None if row is None else _lease(row, name)


def renew_lease(store: Any, name: str, holder: str, ttl_s: float) -> Lease:
    _key(name, "name")
    ttl = _ttl_us(ttl_s)
    now = store._dialect.now_us
    with store.transaction():
        row = store._x(
            f"UPDATE leases SET expires_us = {now} + ? "
            f"WHERE name = ? AND holder = ? AND expires_us > {now} "
            "RETURNING holder, expires_us, fence",
            (ttl, name, holder),
        ).fetchone()
    if row is None:
        raise LeaseLost(
            f"lease {name!r}: {holder!r} no longer holds it (expired or taken over); "
            "stop the work it guarded and acquire it again"
        )
    return _lease(row, name)


def release_lease(store: Any, name: str, holder: str) -> bool:
    _key(name, "name")
    now = store._dialect.now_us
    with store.transaction():
        cur = store._x(
            f"UPDATE leases SET expires_us = {now} WHERE name = ? AND holder = ? "
            f"AND expires_us > {now}",
            (name, holder),
        )
    return cur.rowcount == 1


# -- configuration ---------------------------------------------------------------------------
def put_config(store: Any, config: Mapping[str, Any], reason: str) -> int:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed(
            [ItemError(0, "reason", "must be a non-empty string saying why")], "configuration"
        )
    obj, text = normalise_payload(config, "configuration")
    with store.transaction():
        store._lock_writers("audit")
        last = store._x(
            "SELECT version, body FROM configs ORDER BY version DESC LIMIT 1"
        ).fetchone()
        if last is not None and last[1] == text:
            return int(last[0])
        version = 1 if last is None else int(last[0]) + 1
        store._x("INSERT INTO configs VALUES (?, ?, ?)", (version, text, now_us()))
        store.append_audit(
            "config.changed",
            {
                "version": version,
                "previous": None if last is None else int(last[0]),
                "reason": reason.strip(),
                "config": obj,
            },
        )
    return version


def get_config(store: Any, version: int | None) -> ConfigRecord | None:
    if version is None:
        row = store._x(
            "SELECT version, body, created_at FROM configs ORDER BY version DESC LIMIT 1"
        ).fetchone()
    else:
        row = store._x(
            "SELECT version, body, created_at FROM configs WHERE version = ?", (int(version),)
        ).fetchone()
    if row is None:
        return None
    return ConfigRecord(int(row[0]), json.loads(row[1]), from_us(int(row[2])))


# -- monitor history -------------------------------------------------------------------------
_POINT_COLS = (
    "seq, at, n_labelled, estimate, lower, upper, lam, lam_crit, state, policy_version, changed"
)


def _opt(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def append_monitor_point(store: Any, point: MonitorPoint) -> None:
    if not isinstance(point, MonitorPoint):
        raise ValidationFailed(
            [ItemError(0, "point", f"must be a MonitorPoint, got {type(point).__name__}")],
            "monitor history",
        )
    try:
        at = to_us(point.at)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            [ItemError(0, "at", f"must be an ISO-8601 time, got {point.at!r} ({exc})")],
            "monitor history",
        ) from None
    with store.transaction():
        last = store._x(
            "SELECT seq, state FROM monitor_points ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if last is not None and int(point.seq) <= int(last[0]):
            raise ValidationFailed(
                [
                    ItemError(
                        0, "seq", f"must be larger than the last stored {last[0]}, got {point.seq}"
                    )
                ],
                "monitor history",
            )
        changed = last is None or last[1] != point.state
        store._x(
            f"INSERT INTO monitor_points ({_POINT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                int(point.seq),
                at,
                int(point.n_labelled),
                _opt(point.estimate),
                _opt(point.lower),
                _opt(point.upper),
                float(point.lam),
                float(point.lam_crit),
                str(point.state),
                point.policy_version,
                int(changed),
            ),
        )


def monitor_history(store: Any, max_points: int) -> list[MonitorPoint]:
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValidationFailed(
            [ItemError(0, "max_points", f"must be a whole number >= 1, got {max_points!r}")],
            "monitor history",
        )
    if store._dialect.read_only and "monitor_points" not in store._dialect.tables(store._conn):
        return []  # a store made before the table, opened read-only: no history yet
    with store._read():
        n, n_changed = store._x(
            "SELECT COUNT(*), COALESCE(SUM(changed), 0) FROM monitor_points"
        ).fetchone()
        n, n_changed = int(n), int(n_changed)
        select = f"SELECT {_POINT_COLS} FROM monitor_points"
        if n <= max_points:
            rows = store._x(f"{select} ORDER BY seq").fetchall()
        elif n_changed >= max_points:  # only the changes fit: the newest of them
            rows = store._x(
                f"{select} WHERE changed = 1 ORDER BY seq DESC LIMIT {int(max_points)}"
            ).fetchall()[::-1]
        else:
            # every stride-th point (counted in seq order), the changes and the newest
            budget = max(max_points - n_changed - 1, 1)
            stride = -(-n // budget)
            rows = store._x(
                f"SELECT {_POINT_COLS} FROM (SELECT {_POINT_COLS}, "
                "ROW_NUMBER() OVER (ORDER BY seq) - 1 AS rn FROM monitor_points) AS t "
                f"WHERE changed = 1 OR rn = {n - 1} OR rn - (rn / {stride}) * {stride} = 0 "
                "ORDER BY seq"
            ).fetchall()
    return [
        MonitorPoint(
            seq=int(r[0]),
            at=from_us(int(r[1])).isoformat(),
            n_labelled=int(r[2]),
            estimate=r[3],
            lower=r[4],
            upper=r[5],
            lam=float(r[6]),
            lam_crit=float(r[7]),
            state=r[8],
            policy_version=r[9],
        )
        for r in rows
    ]
