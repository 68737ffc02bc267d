"""Durations a scenario draws (handle, accept, wrap-up, patience): each a
pydantic model chosen by its `type`, drawn in whole milliseconds from a
seeded random.Random, so a run is reproducible bit for bit.

  {"type": "exponential", "meanMs": 180000}
  {"type": "lognormal", "meanMs": 180000, "sdMs": 90000}
  {"type": "fixed", "valueMs": 5000}
  {"type": "empirical", "file": "handle.txt"}   one value in ms per line (or a
      JSON list), relative to the scenario file; drawn uniformly with replacement
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

MAX_MS = 7 * 24 * 3600 * 1000  # a week: longer than any duration a router holds


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def sample(self, rng: random.Random) -> int:  # pragma: no cover - each subclass has its own
        raise NotImplementedError

    @property
    def mean_ms(self) -> float:  # pragma: no cover
        raise NotImplementedError


class Exponential(_Dist):
    type: Literal["exponential"]
    meanMs: float = Field(gt=0, le=MAX_MS)

    def sample(self, rng: random.Random) -> int:
        return round(rng.expovariate(1.0 / self.meanMs))

    @property
    def mean_ms(self) -> float:
        return self.meanMs


class Lognormal(_Dist):
    """Given by its own mean and standard deviation (not the log's)."""

    type: Literal["lognormal"]
    meanMs: float = Field(gt=0, le=MAX_MS)
    sdMs: float = Field(gt=0, le=MAX_MS)

    def sample(self, rng: random.Random) -> int:
        s2 = math.log1p((self.sdMs / self.meanMs) ** 2)
        return min(MAX_MS, round(rng.lognormvariate(math.log(self.meanMs) - s2 / 2, math.sqrt(s2))))

    @property
    def mean_ms(self) -> float:
        return self.meanMs


class Fixed(_Dist):
    type: Literal["fixed"]
    valueMs: int = Field(ge=0, le=MAX_MS)

    def sample(self, rng: random.Random) -> int:
        return self.valueMs

    @property
    def mean_ms(self) -> float:
        return float(self.valueMs)


class Empirical(_Dist):
    """Values read from `file` (relative to the scenario file) when the
    scenario is validated: a missing or bad file is an error naming this
    field."""

    type: Literal["empirical"]
    file: str = Field(min_length=1)
    _values: tuple[int, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _read(self, info: ValidationInfo) -> Empirical:
        path = Path((info.context or {}).get("base_dir", ".")) / self.file
        try:
            text = path.read_text()
        except OSError as e:
            raise ValueError(f"file: cannot read {path}: {e.strerror or e}") from None
        try:
            raw = json.loads(text) if text.lstrip().startswith("[") else text.split()
            values = tuple(round(float(x)) for x in raw)
        except (ValueError, TypeError):
            raise ValueError(f"file: {path} must hold numbers of ms, one per line or a JSON list") from None
        if not values or any(not 0 <= x <= MAX_MS for x in values):
            raise ValueError(f"file: {path} must hold at least one value, each from 0 to {MAX_MS} ms")
        self._values = values
        return self

    def sample(self, rng: random.Random) -> int:
        return self._values[rng.randrange(len(self._values))]

    @property
    def mean_ms(self) -> float:
        return sum(self._values) / len(self._values)


Distribution = Annotated[Exponential | Lognormal | Fixed | Empirical, Field(discriminator="type")]
