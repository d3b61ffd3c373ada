"""The serialisation protocol of NPO's stateful statistical objects.

Every stateful object (confidence sequences, e-detectors, monitors, the Horvitz–Thompson
stream) has ``state_dict() -> dict`` and ``load_state_dict(state) -> None``: the state is a
JSON-able mapping (numbers, strings, lists, dicts) that holds what the object learned
from its observations, never its parameters. An object built with the same parameters
and given ``load_state_dict(a.state_dict())`` continues exactly as ``a`` would: the same
outputs for the same further observations (``npo.testing`` checks it). A loop writes these
states into its checkpoint, in the same transaction as the data that changed them.

Floats round-trip exactly (JSON keeps the shortest ``repr``); non-finite floats are
written as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (what a canonical JSON encoder does
with them anyway). Large float arrays are written as base64 of their little-endian bytes.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from npo.errors import ItemError, ValidationFailed

__all__ = ["check_kind", "pack_array", "pack_float", "unpack_array", "unpack_float"]

_INLINE = 64  # arrays up to this many values are written as JSON lists


def pack_float(x: float) -> float | str:
    """A float as JSON: itself, or ``"inf"`` / ``"-inf"`` / ``"nan"``."""
    v = float(x)
    return v if math.isfinite(v) else repr(v)


def unpack_float(x: Any) -> float:
    """The inverse of :func:`pack_float` (also accepts plain numbers)."""
    return float(x)


def pack_array(a: Any) -> Any:
    """A numpy array as JSON: a list (small arrays; non-finite values as strings), or
    ``{"b64": …, "dtype": …, "shape": …}`` for large ones."""
    arr = np.asarray(a)
    if arr.size <= _INLINE:
        if arr.dtype.kind == "f":
            flat = [pack_float(v) for v in arr.reshape(-1).tolist()]
            return {"list": flat, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        return {"list": arr.reshape(-1).tolist(), "dtype": arr.dtype.str, "shape": list(arr.shape)}
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {
        "b64": base64.b64encode(np.ascontiguousarray(le).tobytes()).decode("ascii"),
        "dtype": le.dtype.str,
        "shape": list(arr.shape),
    }


def unpack_array(obj: Any) -> np.ndarray:
    """The inverse of :func:`pack_array`."""
    if not isinstance(obj, Mapping) or "dtype" not in obj or "shape" not in obj:
        raise ValidationFailed(
            [ItemError(0, "state", f"not a packed array: {str(obj)[:80]}")], what="state"
        )
    dtype = np.dtype(obj["dtype"])
    shape = tuple(int(s) for s in obj["shape"])
    if "b64" in obj:
        flat = np.frombuffer(base64.b64decode(obj["b64"]), dtype=dtype).copy()
    elif dtype.kind == "f":
        flat = np.array([float(v) for v in obj["list"]], dtype=dtype)
    else:
        flat = np.asarray(obj["list"], dtype=dtype)
    return flat.reshape(shape)


def check_kind(state: Mapping[str, Any], kind: str) -> None:
    """Refuse a state written by another kind of object (naming both)."""
    got = state.get("kind") if isinstance(state, Mapping) else None
    if got != kind:
        raise ValidationFailed(
            [ItemError(0, "state.kind", f"is the state of {got!r}, not of {kind!r}")],
            what="state",
        )
