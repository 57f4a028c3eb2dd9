"""Which token-table columns can colour a map, and how: the one list to extend.

A *categorical* column colours by level (at most ``raster.MAX_LEVELS`` of them, each with a
legend entry and its count); a *continuous* column (float scores) colours along a palette
with a colour bar. ``colourings`` offers the ones present in a table, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from job.render import raster

# pos: Japanese vocabularies only; verified: runs that `vocabmap verify` asked (job/verify.py)
CATEGORICAL = ("category", "script", "pos", "verified")
CONTINUOUS = ("undertrained",)  # float columns; NaN means "no value" (drawn grey)
CONTINUOUS_PALETTE = "Viridis256"  # a bokeh.palettes name
MISSING_COLOUR = "#bbbbbb"


@dataclass
class Colouring:
    """One way to colour the points: per-token values and how they map to colours."""

    name: str
    kind: str  # "categorical" or "continuous"
    values: np.ndarray  # uint8 level codes (255 = missing) or float32 values (NaN = missing)
    levels: list[str] = field(default_factory=list)  # categorical: level names
    colours: list[str] = field(default_factory=list)  # categorical: one per level
    counts: list[int] = field(default_factory=list)  # categorical: tokens per level
    low: float = 0.0  # continuous: the palette's ends (1st and 99th percentiles)
    high: float = 1.0
    missing: int = 0  # tokens without a value

    def header(self) -> dict[str, object]:
        """Everything but the values, for the page's data header."""
        out: dict[str, object] = {"name": self.name, "kind": self.kind, "missing": self.missing}
        if self.kind == "categorical":
            out |= {"levels": self.levels, "colours": self.colours, "counts": self.counts}
        else:
            out |= {"low": self.low, "high": self.high, "palette": palette()}
        return out


def palette() -> list[str]:
    """The continuous palette (256 hex colours)."""
    from bokeh import palettes

    return list(getattr(palettes, CONTINUOUS_PALETTE))


def categorical(table: pd.DataFrame, name: str) -> Colouring:
    """``name`` as level codes with the overview's colours (raster.colour_key)."""
    frame = raster.categorical(table, name)
    key = raster.colour_key(frame, name)
    codes = frame[name].cat.codes.to_numpy()
    counts = np.bincount(codes[codes >= 0], minlength=len(key))
    return Colouring(name, "categorical", np.where(codes < 0, 255, codes).astype(np.uint8),
                     levels=[str(c) for c in key], colours=list(key.values()),
                     counts=[int(c) for c in counts], missing=int((codes < 0).sum()))


def continuous(table: pd.DataFrame, name: str) -> Colouring:
    """A float column, its palette spanning the 1st to 99th percentile of its values."""
    values = table[name].to_numpy(dtype=np.float32, na_value=np.nan)
    finite = values[np.isfinite(values)]
    low, high = (np.percentile(finite, [1, 99]) if len(finite) else (0.0, 1.0))
    if not high > low:
        high = low + 1.0
    return Colouring(name, "continuous", values, low=float(low), high=float(high),
                     missing=int(len(values) - len(finite)))


def colourings(table: pd.DataFrame, first: str) -> list[Colouring]:
    """The colourings a table offers, ``first`` (the configured one) first."""
    names = [first] + [c for c in (*CATEGORICAL, *CONTINUOUS) if c != first and c in table]
    return [continuous(table, n) if n in CONTINUOUS else categorical(table, n) for n in names]
