"""The service's settings: one validated object, passed to :func:`create_app` or read
from ``$NPO_SERVICE_SETTINGS`` (JSON) by each worker process that ``npo serve`` starts."""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from npo.errors import ItemError, ValidationFailed

ENV = "NPO_SERVICE_SETTINGS"


class Settings(BaseModel):
    """- ``db``: the store (SQLite path or ``postgresql://`` URL);
    - ``config``: a loop configuration (TOML) stored at start-up (default: the store's);
    - ``agreement``: share of reviewed decisions that agreement sampling hands to a second
      reviewer;
    - ``max_body_bytes``: larger request bodies get 413;
    - ``token_cache_s``: how long a process trusts a token it has checked (a revocation
      takes effect within this time);
    - ``claim_ttl_s``: how long a review-queue claim lasts;
    - ``seed``: review sampling seed (the same for every worker: a decision's coin
      depends on the seed and its id only);
    - ``trusted``: extra types trusted when loading skops policies;
    - ``decide_batch``: most scenarios of concurrent ``/v1/decide`` requests decided
      together in one call of the loop (1: no coalescing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    db: str
    config: str | None = None
    agreement: float = Field(default=0.1, ge=0.0, le=1.0)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    token_cache_s: float = Field(default=1.0, ge=0.0, le=300.0)
    claim_ttl_s: float = Field(default=600.0, ge=1.0, le=86_400.0)
    seed: int = 0
    trusted: tuple[str, ...] = ()
    decide_batch: int = Field(default=512, ge=1, le=100_000)

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> Settings:
        text = os.environ.get(ENV)
        if not text:
            raise ValidationFailed(
                [ItemError(0, ENV, "not set: start the service with npo serve")], "settings"
            )
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed(
                [
                    ItemError(0, ".".join(str(p) for p in e["loc"]) or "settings", e["msg"])
                    for e in exc.errors()
                ],
                "settings",
            ) from None
