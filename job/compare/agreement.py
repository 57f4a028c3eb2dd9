"""Neighbourhood agreement between two spaces over the same tokens, and its calibration.

* **Mutual k-NN overlap** (Huh et al. 2024, "The Platonic Representation Hypothesis"): for
  each token, the share of its k nearest tokens that both spaces agree on; the score of a
  pair is the mean over tokens. Per token it says what moved (0 = a new neighbourhood).
* **Permutation null** (Gröger, Wen & Brbić 2026, "Revisiting the Platonic Representation
  Hypothesis: An Aristotelian View", arXiv 2602.14486): shuffling the token correspondence
  between the two spaces keeps each space as it is (its hubs, its density, its dimension)
  and breaks only the pairing, so it gives the scores that two unrelated spaces of exactly
  these shapes would reach. Under a shuffle ``p`` the neighbour list of token ``i`` in the
  second space becomes ``p⁻¹(N_B(p(i)))``: relabelling the stored lists, no new search.
* **Calibrated score** (their Algorithm 1): ``tau`` is the (1 − alpha) quantile of the null
  scores together with the observed one, the p-value ``(1 + #{null >= observed}) / (K + 1)``,
  and the calibrated score ``clip((observed − tau) / (1 − tau), 0, 1)``: 0 for anything a
  shuffle reaches, 1 for identical neighbourhoods.

The ``category`` null shuffles only within blocks (e.g. numbers with numbers), the restricted
permutations that paper's framework admits: it asks how much agreement is left beyond "both
spaces put numbers near numbers".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from job.knn import shared_counts

log = logging.getLogger(__name__)



def neighbour_lists(points: np.ndarray, k: int, requested: str = "auto") -> np.ndarray:
    """The ``k`` nearest other rows of every row (n × k int32, nearest first).

    In high dimension by the route the run's ``layout.knn`` (``requested``) gives
    (``job.search``: int8 products for a large vocabulary on a CPU that multiplies int8
    fast, else exact); a k-d tree (exact) for 2-D maps.
    """
    n = points.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k = {k} needs 0 < k < {n} (the number of rows)")
    from job import search
    from job.knn import map_knn

    if points.shape[1] <= 3:
        return map_knn(points, k).astype(np.int32)

    route = search.choose_search(requested, n, points.shape[1], on_gpu=False)
    if not route.exact:
        log.info("neighbours of %d shared tokens in %d dims: %s (%s)", n, points.shape[1],
                 route.name, route.why)
    idx, _ = route.graph(np.ascontiguousarray(points, dtype=np.float32), k)
    return np.asarray(idx, dtype=np.int32)


def per_token(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each token's neighbourhood agreement: the share of its k neighbours both lists hold."""
    return shared_counts(a, b) / a.shape[1]


def shuffled(b: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Neighbour lists of the second space after pairing token ``i`` with token ``perm[i]``."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.shape[0])
    return inverse[b[perm]]


def permutation(n: int, rng: np.random.Generator, groups: list[np.ndarray] | None,
                ) -> np.ndarray:
    """A uniform shuffle of ``n`` tokens, or one that moves tokens only within their group
    (``groups``: the row numbers of each group, see :func:`groups`)."""
    if groups is None:
        return rng.permutation(n)
    perm = np.arange(n)
    for members in groups:
        perm[members] = members[rng.permutation(members.shape[0])]
    return perm


def groups(blocks: np.ndarray) -> list[np.ndarray]:
    """Row numbers of each distinct value of ``blocks``."""
    order = np.argsort(blocks, kind="stable")
    cuts = np.flatnonzero(np.diff(blocks[order])) + 1
    return np.split(order, cuts)


@dataclass(frozen=True)
class Calibrated:
    """An observed agreement against its permutation null."""

    observed: float
    null_mean: float
    null_std: float
    tau: float  # the null's (1 - alpha) quantile, observed value included
    p_value: float
    calibrated: float
    permutations: int
    null: str  # "uniform" or the column the shuffles stayed within

    @property
    def z(self) -> float:
        """Standard deviations above the null mean (inf when the null does not vary)."""
        gap = self.observed - self.null_mean
        if self.null_std > 0:
            return gap / self.null_std
        return 0.0 if gap == 0 else math.copysign(math.inf, gap)

    def record(self) -> dict[str, float | int | str]:
        z = self.z
        return {"observed": round(self.observed, 4), "null_mean": round(self.null_mean, 5),
                "null_std": round(self.null_std, 5), "tau": round(self.tau, 5),
                "p_value": round(self.p_value, 5), "calibrated": round(self.calibrated, 4),
                "z": round(z, 1) if math.isfinite(z) else None,
                "permutations": self.permutations, "null": self.null}


def calibrate(observed: float, null: np.ndarray, alpha: float, name: str) -> Calibrated:
    """The calibrated score of ``observed`` against the ``null`` scores (scores in [0, 1])."""
    null = np.asarray(null, dtype=np.float64)
    combined = np.sort(np.append(null, observed))
    index = min(max(math.ceil((1 - alpha) * combined.shape[0]) - 1, 0), null.shape[0])
    tau = float(combined[index])
    p = (1.0 + float((null >= observed).sum())) / (null.shape[0] + 1.0)
    score = 1.0 if observed >= 1.0 else float(np.clip((observed - tau) / (1.0 - tau), 0, 1))
    return Calibrated(float(observed), float(null.mean()), float(null.std()), tau, p, score,
                      int(null.shape[0]), name)


def null_scores(a: np.ndarray, b: np.ndarray, permutations: int, seed: int,
                blocks: np.ndarray | None = None) -> np.ndarray:
    """Mean agreement of ``a`` with ``b`` under ``permutations`` random shuffles (within the
    groups of ``blocks`` when given)."""
    rng = np.random.default_rng(seed)
    k = a.shape[1]
    members = groups(blocks) if blocks is not None else None
    out = np.empty(permutations)
    for i in range(permutations):
        perm = permutation(a.shape[0], rng, members)
        out[i] = shared_counts(a, shuffled(b, perm)).mean() / k
    return out


def agreement(a: np.ndarray, b: np.ndarray, permutations: int, alpha: float, seed: int,
              blocks: np.ndarray | None = None, block_name: str = "category",
              ) -> tuple[np.ndarray, list[Calibrated]]:
    """Per-token agreement of two neighbour lists over the same tokens, and its mean
    calibrated against the uniform null and (with ``blocks``) the within-block null."""
    tokens = per_token(a, b)
    observed = float(tokens.mean())
    scores = [calibrate(observed, null_scores(a, b, permutations, seed), alpha, "uniform")]
    if blocks is not None and len(np.unique(blocks)) > 1:
        null = null_scores(a, b, permutations, seed + 1, blocks)
        scores.append(calibrate(observed, null, alpha, block_name))
    return tokens, scores
