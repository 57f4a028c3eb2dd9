"""Procrustes between two maps on the tokens they share (neighbour agreement is in
``agreement.py``).

* Procrustes: the best similarity transform (shift, rotation/reflection, uniform scale) of
  one map onto the other on the shared tokens, and the disparity left over: both maps
  centred and scaled to unit Frobenius norm, disparity = 1 - (sum of singular values)^2,
  in [0, 1] and symmetric (the quantity ``scipy.spatial.procrustes`` reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    """Maps points of the moving layout into the reference layout's coordinates."""

    mean_moving: np.ndarray
    mean_ref: np.ndarray
    norm_moving: float
    norm_ref: float
    rotation: np.ndarray  # 2 x 2, orthogonal (may include a reflection)
    scale: float  # sum of singular values of the normalised cross-covariance
    disparity: float

    def apply(self, points: np.ndarray, shrink: bool = True) -> np.ndarray:
        """Points of the moving layout in reference coordinates. ``shrink=False`` keeps the
        shared tokens' spread equal to the reference's (the least-squares fit shrinks a map
        towards its centre when the two agree poorly, which makes pictures hard to read)."""
        unit = (np.asarray(points, dtype=np.float64) - self.mean_moving) / self.norm_moving
        scale = self.scale if shrink else 1.0
        return unit @ self.rotation * scale * self.norm_ref + self.mean_ref


def procrustes(ref: np.ndarray, moving: np.ndarray) -> Alignment:
    """Align ``moving`` (n x 2) onto ``ref`` (n x 2), rows paired by shared token."""
    ref = np.asarray(ref, dtype=np.float64)
    moving = np.asarray(moving, dtype=np.float64)
    if ref.shape != moving.shape or ref.shape[0] < 3:
        raise ValueError(f"need two equal-shaped point sets of >= 3 rows, got {ref.shape} "
                         f"and {moving.shape}")
    mean_ref, mean_moving = ref.mean(axis=0), moving.mean(axis=0)
    a, b = ref - mean_ref, moving - mean_moving
    norm_ref = float(np.linalg.norm(a)) or 1.0
    norm_moving = float(np.linalg.norm(b)) or 1.0
    a, b = a / norm_ref, b / norm_moving
    u, s, vt = np.linalg.svd(b.T @ a)
    scale = float(s.sum())
    return Alignment(mean_moving, mean_ref, norm_moving, norm_ref, u @ vt, scale,
                     disparity=float(max(0.0, 1.0 - scale**2)))
