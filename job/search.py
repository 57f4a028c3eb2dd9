"""The neighbour search: which route a matrix gets (exact float32 where it is cheap, int8
products where the exact search would dominate the job and this CPU multiplies int8 much
faster, exact on the GPU), the kNN graph by that route, and the map-space search.

Every search of the original space (the layout's graph, the quality score, the neighbours
file, ``compare`` and its aligned layouts) goes through a :class:`Search` made by
:func:`choose` from the config's ``layout.knn``.

The exact search costs about N² · d multiply-adds (half of them, by symmetry). On the
embedded default (30,522 × 384) that is a few seconds; on a 131,072 × 5,120 vocabulary it
was 85 % of a 462 s job on 2 cores. int8 products (job/knn.py) keep the same blocked search
and give up only the order of near-ties (docs/speed.md, "Neighbour search at scale",
and docs/benchmarks.md, for the measured time and recall). The GPU path stays exact: there
the search takes seconds.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from job.knn import knn

log = logging.getLogger(__name__)

# N² · d below which the exact float32 search is kept: the embedded default is 3.6e11; a
# 50,000-token vocabulary at 768 dims (1.9e12) takes int8 where this CPU makes it pay.
EXACT_BELOW = 1.5e12
MIN_SPEEDUP = 1.5  # int8 products must be at least this much faster to be chosen


EXACT = "exact"
INT8 = "int8"


@dataclass(frozen=True)
class Search:
    """How the kNN graph is searched (route "exact" or "int8"), and why."""

    name: str
    why: str

    @property
    def precision(self) -> str:
        """What job.knn.knn takes: "fp32" or "int8"."""
        return "int8" if self.name == INT8 else "fp32"

    @property
    def exact(self) -> bool:
        """The graph holds the exact neighbours (up to float32 ties)."""
        return self.name == EXACT

    def record(self) -> dict[str, object]:
        return {"name": self.name, "precision": self.precision, "why": self.why,
                "exact": self.exact}

    def graph(self, data: Any, k: int) -> tuple[Any, Any]:
        """The ``k`` nearest other rows of every row of ``data`` by this route: indices and
        distances (job.knn.knn), arrays of ``data``'s module."""
        return knn(data, k, precision=self.precision)


def choose_search(requested: str, n: int, d: int, on_gpu: bool) -> Search:
    """The route for ``n`` rows of ``d`` dims: ``requested`` is ``layout.knn``
    ("auto", "exact" or "int8")."""
    cost = float(n) ** 2 * d
    if on_gpu:
        if requested == INT8:
            log.warning("layout.knn = 'int8' is a CPU route; the GPU search is exact")
        return Search(EXACT, "GPU: the exact search takes seconds")
    if requested == EXACT:
        return Search(EXACT, "requested (layout.knn = 'exact')")
    if requested == INT8:
        return Search(INT8, "requested (layout.knn = 'int8')")
    if cost < EXACT_BELOW:
        return Search(EXACT, f"N² · d = {cost:.1e} is below {EXACT_BELOW:.1e}")
    speedup = int8_speedup(d)
    if speedup < MIN_SPEEDUP:
        return Search(EXACT, f"N² · d = {cost:.1e}, but int8 products are only "
                     f"{speedup:.1f}x faster than float32 on this CPU")
    return Search(INT8, f"N² · d = {cost:.1e} is above {EXACT_BELOW:.1e} and int8 "
                 f"products are {speedup:.1f}x faster than float32 on this CPU")


@functools.cache
def int8_speedup(d: int, rows: int = 2048, repeats: int = 3) -> float:
    """How many times faster this CPU multiplies int8 (int32 sums) than float32 matrices of
    ``d`` columns (best of ``repeats``; about a tenth of a second). 0 where torch or its
    int8 product is missing."""
    try:
        import torch

        d = min(d, 4096)
        x = torch.randn(rows, d)
        q = torch.randint(-127, 128, (rows, d), dtype=torch.int8)
        fp32 = _best(lambda: x @ x.T, repeats)
        int8 = _best(lambda: torch._int_mm(q, q.T), repeats)
    except (ImportError, RuntimeError, AttributeError) as err:
        log.debug("no int8 products here: %s", err)
        return 0.0
    return fp32 / max(int8, 1e-9)


def _best(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up
    took = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        took.append(time.perf_counter() - start)
    return min(took)

