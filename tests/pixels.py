"""Pixels of a drawn map: whether a layout's points are inked where a canvas puts them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from job.render import raster


def grey(path: Path) -> np.ndarray:
    """The picture at ``path`` as a grey-scale array (rows, columns)."""
    return np.asarray(Image.open(path).convert("L"))


def inked_at(pixels: np.ndarray, canvas: raster.Canvas, x: np.ndarray, y: np.ndarray,
             origin: tuple[int, int] = (0, 0)) -> float:
    """Share of the map points ``x``, ``y`` whose pixel is not background: ``canvas`` maps
    them to pixels of its raster, whose top-left corner is ``origin`` (left, top) in
    ``pixels``; a point off the raster counts at its nearest edge."""
    px, py = canvas.to_pixels(x, y)
    col = np.clip(px.astype(int), 0, canvas.width - 1) + origin[0]
    row = np.clip(py.astype(int), 0, canvas.height - 1) + origin[1]
    return float((pixels[row, col] < 250).mean())
