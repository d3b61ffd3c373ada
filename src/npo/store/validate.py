"""Moved: the rules live in :mod:`npo.domain.rules`; the time helpers are re-exported here
for code written against NPO 0.1."""

from npo.domain.rules import from_us, now_us, to_us

__all__ = ["from_us", "now_us", "to_us"]
