"""Seeds of the numeric tests, and the spread their thresholds were set from.

A numeric test (marker ``numeric``) asserts on floating-point results of t-SNE, kNN, PCA,
Procrustes, permutation nulls or scores. Such results differ in their last digits between
CPUs (BLAS, FFT and int8 kernels, summation order, thread counts), and t-SNE turns a
last-digit difference into another layout, much as another seed would. So each threshold
is set from the spread of its value over several seeds, one and two threads and the CPU
code paths this machine can force (``bench/numeric_spread.py`` measures it; the figures
stand next to each threshold), and ``--seed-set N`` draws every seeded input of these tests
anew, so ``make test-any-machine`` can try them as another machine would.
"""

from __future__ import annotations

from collections.abc import Callable

SEED_SET = 0  # set from pytest's --seed-set by tests/conftest.py


def seed(base: int = 0) -> int:
    """The seed a numeric test uses where it would use ``base``: ``base`` itself in the
    default set 0, another draw in every other set."""
    return base + 1009 * SEED_SET


Record = Callable[[str, object], None]  # pytest's record_property: a value this test asserts on
