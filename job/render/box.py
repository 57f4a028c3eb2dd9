"""A box in map coordinates: the one value behind a zoom region and a picture's canvas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """The map-coordinate ranges ``x0``..``x1`` and ``y0``..``y1`` (edges included)."""

    x0: float
    x1: float
    y0: float
    y1: float

    @classmethod
    def around(cls, cx: float, cy: float, half_x: float, half_y: float) -> Box:
        """The box centred on (``cx``, ``cy``) reaching ``half_x`` and ``half_y`` each way."""
        return cls(cx - half_x, cx + half_x, cy - half_y, cy + half_y)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def size(self) -> tuple[float, float]:
        """Width and height in map units."""
        return self.x1 - self.x0, self.y1 - self.y0

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point (``x[i]``, ``y[i]``) lies in the box."""
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)

    def as_list(self) -> list[float]:
        """``[x0, x1, y0, y1]``, as the config's ``box`` and the manifest write it."""
        return [self.x0, self.x1, self.y0, self.y1]
