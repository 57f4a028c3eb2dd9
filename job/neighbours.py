"""Which neighbour search a layout gets: exact float32 where it is cheap, bf16 products where
the exact search would dominate the job and this CPU multiplies bf16 much faster.

The exact search costs about N² · d multiply-adds (half of them, by symmetry). On the
embedded default (30,522 × 384) that is a few seconds; on a 131,072 × 5,120 vocabulary it
was 85 % of a 462 s job on 2 cores. bf16 products (job/knn.py) keep the same blocked search
and give up only the order of near-ties: measured on 32,768 × 5,120 rows, 2.8 times less
CPU time and 99 % of the exact 90 neighbours (README, "Neighbour search at scale"). The GPU
path stays exact: there the search takes seconds.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

# N² · d below which the exact float32 search is kept: the embedded default is 3.6e11; a
# 50,000-token vocabulary at 768 dims (1.9e12) takes bf16 where this CPU makes it pay.
EXACT_BELOW = 1.5e12
MIN_SPEEDUP = 1.5  # bf16 products must be at least this much faster to be chosen


@dataclass(frozen=True)
class Route:
    """How the kNN graph is searched: ``precision`` for job.knn.knn, and why."""

    name: str  # "exact" or "bf16"
    precision: str  # "fp32" or "bf16"
    why: str
    exact: bool  # the graph holds the exact neighbours (up to float32 ties)

    def record(self) -> dict[str, object]:
        return asdict(self)


EXACT = "exact"
BF16 = "bf16"


def choose(requested: str, n: int, d: int, on_gpu: bool) -> Route:
    """The route for ``n`` rows of ``d`` dims: ``requested`` is ``layout.knn``
    ("auto", "exact" or "bf16")."""
    cost = float(n) ** 2 * d
    if on_gpu:
        if requested == BF16:
            log.warning("layout.knn = 'bf16' is a CPU route; the GPU search is exact")
        return Route(EXACT, "fp32", "GPU: the exact search takes seconds", True)
    if requested == EXACT:
        return Route(EXACT, "fp32", "requested (layout.knn = 'exact')", True)
    if requested == BF16:
        return Route(BF16, "bf16", "requested (layout.knn = 'bf16')", False)
    if cost < EXACT_BELOW:
        return Route(EXACT, "fp32", f"N² · d = {cost:.1e} is below {EXACT_BELOW:.1e}", True)
    speedup = bf16_speedup(d)
    if speedup < MIN_SPEEDUP:
        return Route(EXACT, "fp32", f"N² · d = {cost:.1e}, but bf16 products are only "
                     f"{speedup:.1f}x faster than float32 on this CPU", True)
    return Route(BF16, "bf16", f"N² · d = {cost:.1e} is above {EXACT_BELOW:.1e} and bf16 "
                 f"products are {speedup:.1f}x faster than float32 on this CPU", False)


@functools.cache
def bf16_speedup(d: int, rows: int = 2048, repeats: int = 3) -> float:
    """How many times faster this CPU multiplies bf16 than float32 matrices of ``d`` columns
    (best of ``repeats``; about a tenth of a second). 0 without torch."""
    try:
        import torch
    except ImportError:
        return 0.0
    d = min(d, 4096)
    a = torch.randn(rows, d)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        x @ x.T  # warm-up
        took = []
        for _ in range(repeats):
            start = time.perf_counter()
            x @ x.T
            took.append(time.perf_counter() - start)
        best[dtype] = min(took)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)
