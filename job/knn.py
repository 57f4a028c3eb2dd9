"""Exact k-nearest neighbours by blocked matrix products, on the GPU (cupy) or the CPU (numpy).

Squared euclidean distance ``|a|² + |b|² − 2 a·b`` for a tile of rows against a tile of rows,
then the k smallest per row. Tiles are sized to a fixed memory budget, so no V × V matrix is
ever held. For the all-rows case the distance matrix is symmetric, so only the tiles on and
above the diagonal are multiplied (half the arithmetic); each tile updates the running
neighbour lists of its rows and of its columns, and once every list holds k candidates a tile
only offers the entries below a list's current k-th distance (a few per cent of it), so the
matrix products are most of the work.

The same code runs on numpy and cupy arrays. The k-smallest selection uses ``torch.topk``
(a zero-copy view of the tile, multi-threaded on the CPU, CUDA on the GPU) when torch can
see the tile's device, else ``argpartition`` of the array's own module.

``precision="int8"`` (CPU, torch) multiplies 8-bit copies of the rows instead: the rows are
centred (distances do not change) and each is scaled to ±127 and rounded; the int8 products
are summed exactly in int32 (VNNI / AMX instructions, ``torch._int_mm``) and scaled back. On
this project's 2-core AMD EPYC that is about 8 times the float32 throughput, and the dot
products of unit rows are off by about 1e-4 at 5,120 dimensions (docs/speed.md), so a neighbour near
the k-th place can swap with the next one; job/search.py decides when that trade is
worth it and the quality stage measures the recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Bytes a float32 distance tile may take: 4096² on the CPU (measured faster than 8192² on
# 2 cores, cache-friendlier), 8192² on a GPU (fewer kernel launches).
TILE_BYTES = {"numpy": 64 * 2**20, "cupy": 256 * 2**20}
PAIR_BLOCK_BYTES = 64 * 2**20  # gathered neighbour rows per block in pair_products


def array_module(x: Any) -> Any:
    """numpy or cupy, whichever owns ``x``."""
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def l2_normalise(x: Any, inplace: bool = False) -> Any:
    """Rows scaled to unit length (zero rows stay zero); works on numpy and cupy arrays.
    ``inplace`` scales a float32 ``x`` itself, in blocks, with no second matrix."""
    xp = array_module(x)
    if not (inplace and x.dtype == xp.float32):
        norms = xp.linalg.norm(x, axis=1, keepdims=True)
        return (x / xp.maximum(norms, xp.float32(1e-12))).astype(xp.float32, copy=False)
    for start in range(0, x.shape[0], 16384):
        block = x[start:start + 16384]
        block /= xp.maximum(xp.linalg.norm(block, axis=1, keepdims=True), xp.float32(1e-12))
    return x


def squared_norms(x: Any, block: int = 8192) -> Any:
    """Each row's squared length, ``(x * x).sum(axis=1)`` computed a block of rows at a time:
    the same values (each row is summed alone either way), without a temporary the size of
    ``x`` (2.5 GiB at 131,072 × 5,120)."""
    xp = array_module(x)
    out = xp.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], block):
        rows = x[start:start + block]
        out[start:start + block] = (rows * rows).sum(axis=1)
    return out


def _stable_argsort(x: Any, axis: int = -1) -> Any:
    """``argsort`` keeping equal values in their order (cupy's sort is always stable and
    takes no ``kind`` in older releases)."""
    xp = array_module(x)
    return xp.argsort(x, axis=axis, kind="stable") if xp is np else xp.argsort(x, axis=axis)


def _torch_view(x: Any) -> Any | None:
    """``x`` as a torch tensor sharing its memory, or None when torch cannot see it."""
    try:
        import torch
    except ImportError:
        return None
    if array_module(x) is np:
        return torch.from_numpy(x)
    if not torch.cuda.is_available():
        return None
    return torch.from_dlpack(x)


def smallest(d: Any, k: int, use_torch: bool = True, axis: int = 1, ordered: bool = True,
             ) -> tuple[Any, Any]:
    """Positions and values of the ``k`` smallest entries along ``axis``, ascending.

    Returns ``(n, k)`` arrays, ``n`` being the other axis's length (so ``axis=0`` answers for
    each column without a transposed copy when torch does the selection). Equal values are
    ordered by position, so the order does not depend on the selection routine (which of
    several equal values at the k-th place is kept may). ``ordered=False`` skips the sort.
    """
    xp = array_module(d)
    k = min(k, d.shape[axis])
    t = _torch_view(d) if use_torch else None
    if t is not None:
        vals, idx = t.topk(k, dim=axis, largest=False, sorted=False)
        if axis == 0:
            vals, idx = vals.T.contiguous(), idx.T.contiguous()
        if xp is np:  # zero-copy back
            idx, vals = idx.numpy(), vals.numpy()
        else:
            idx, vals = xp.from_dlpack(idx), xp.from_dlpack(vals)
    else:
        if axis == 0:
            d = xp.ascontiguousarray(d.T)
        if k < d.shape[1]:
            idx = xp.argpartition(d, k - 1, axis=1)[:, :k]
        else:
            idx = xp.broadcast_to(xp.arange(d.shape[1]), d.shape).copy()
        vals = xp.take_along_axis(d, idx, axis=1)
    if not ordered:
        return idx, vals
    # Lexicographic (value, position) order: sort by position, then stably by value.
    by_pos = xp.argsort(idx, axis=1)
    idx, vals = xp.take_along_axis(idx, by_pos, axis=1), xp.take_along_axis(vals, by_pos, axis=1)
    by_val = _stable_argsort(vals, axis=1)
    return xp.take_along_axis(idx, by_val, axis=1), xp.take_along_axis(vals, by_val, axis=1)


def _merge(best_i: Any, best_d: Any, d2: Any, offset: int, k: int, use_torch: bool,
           axis: int = 1) -> tuple[Any, Any]:
    """Running k-nearest lists updated with a tile's rows (``axis=1``) or columns
    (``axis=0``), whose other-axis position j is row ``offset + j`` of the data."""
    xp = array_module(d2)
    pos, vals = smallest(d2, k, use_torch, axis, ordered=False)
    cand_i = xp.concatenate([best_i, pos + offset], axis=1)
    cand_d = xp.concatenate([best_d, vals], axis=1)
    pos, vals = smallest(cand_d, k, use_torch, ordered=False)
    return xp.take_along_axis(cand_i, pos, axis=1), vals


def _merge_ragged(best_i: Any, best_d: Any, own: Any, other: Any, vals: Any, k: int,
                  use_torch: bool, grouped: bool = False) -> tuple[Any, Any]:
    """Running lists updated with loose candidates: row ``own[t]`` (of the lists) gets data
    row ``other[t]`` at squared distance ``vals[t]`` (``grouped``: ``own`` already sorted)."""
    xp = array_module(vals)
    if own.shape[0] == 0:
        return best_i, best_d
    if not grouped:
        order = _stable_argsort(own)
        own, other, vals = own[order], other[order], vals[order]
    counts = xp.bincount(own, minlength=best_d.shape[0])
    width = int(counts.max())
    slot = xp.arange(own.shape[0]) - (xp.cumsum(counts) - counts)[own]
    pad_d = xp.full((best_d.shape[0], width), xp.inf, dtype=best_d.dtype)
    pad_i = xp.full((best_d.shape[0], width), -1, dtype=xp.int64)
    pad_d[own, slot] = vals
    pad_i[own, slot] = other
    cand_i = xp.concatenate([best_i, pad_i], axis=1)
    pos, new_d = smallest(xp.concatenate([best_d, pad_d], axis=1), k, use_torch,
                          ordered=False)
    return xp.take_along_axis(cand_i, pos, axis=1), new_d


def _below(d2: Any, thr_rows: Any, thr_cols: Any | None) -> tuple[Any, Any, Any] | None:
    """(row, column, value) of the tile entries below their row's (or column's) k-th
    distance so far, or None when so many pass that a dense selection is cheaper."""
    xp = array_module(d2)
    bound = thr_rows[:, None] if thr_cols is None else xp.maximum(thr_rows[:, None],
                                                                  thr_cols[None, :])
    flat = xp.flatnonzero(d2 < bound)
    if flat.shape[0] * 8 > d2.size:
        return None
    r = flat // d2.shape[1]
    c = flat - r * d2.shape[1]
    return r, c, d2[r, c]


def _tile(data: Any, sq: Any, a: slice, b: slice, low: Int8Rows | None = None) -> Any:
    """Squared distances between rows ``a`` and rows ``b``, computed in place; with ``low``
    from its int8 products (``sq`` then holds the centred rows' squared norms)."""
    d2 = data[a] @ data[b].T if low is None else low.products(a, b)
    d2 *= -2.0
    d2 += sq[a, None]
    d2 += sq[None, b]
    return d2


class Int8Rows:
    """The rows centred, scaled to ±127 per row and rounded to int8 (CPU, torch), built in
    blocks without a second float32 matrix; ``sq`` are the centred rows' squared norms."""

    def __init__(self, data: np.ndarray, block: int = 4096) -> None:
        import torch

        if array_module(data) is not np:
            raise ValueError("precision = 'int8' runs on the CPU (numpy rows)")
        mean = data.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.q = torch.empty(data.shape, dtype=torch.int8)
        self.scale = np.empty(data.shape[0], dtype=np.float32)
        self.sq = np.empty(data.shape[0], dtype=np.float32)
        for start in range(0, data.shape[0], block):
            rows = data[start:start + block] - mean
            scale = np.maximum(np.abs(rows).max(axis=1), np.float32(1e-30)) / 127
            self.scale[start:start + block] = scale
            self.sq[start:start + block] = (rows * rows).sum(axis=1)
            self.q[start:start + block] = torch.from_numpy(
                np.rint(rows / scale[:, None]).astype(np.int8))

    def products(self, a: slice, b: slice) -> np.ndarray:
        """Approximate dot products of centred rows ``a`` and ``b``, float32."""
        import torch

        out = torch._int_mm(self.q[a], self.q[b].T).numpy().astype(np.float32)
        out *= self.scale[a, None]
        out *= self.scale[None, b]
        return out


def zero_rows_apart(sq: Any, others: Any | None = None) -> Any:
    """Squared norms ``sq`` as the distance formula should see them.

    When every row is unit length or all zero (L2-normalised rows: the cosine metric; also
    checked on ``others``, the rows they are compared with), a zero row, such as an
    embedding never trained away from zero, has no direction: it gets 1 added, which puts
    it at squared distance 2 (cosine similarity 0) from every row, as scikit-learn's cosine
    distance does. The formula alone puts it at distance 1, which reads as cosine 0.5 and
    makes it a neighbour of nearly every token of a space whose neighbours are less alike.
    """
    xp = array_module(sq)
    zero = sq == 0

    def unit_or_zero(v: Any) -> bool:
        return bool(xp.all((xp.abs(v - 1) < 1e-3) | (v == 0)))

    if not bool(zero.any()) or not unit_or_zero(sq):
        return sq
    if others is not None and not unit_or_zero(others):
        return sq
    return sq + zero.astype(sq.dtype)


def _diagonal(d2: Any, start: int, k: int, b0: int, use_torch: bool) -> tuple[Any, Any]:
    """The provisional lists of a diagonal tile's rows (columns from ``start``), the row
    itself left out: column stripes of doubling width, the first by full selection, each
    later one offering about k candidates a row, as the lists' k-th distance tightens."""
    xp = array_module(d2)
    m = d2.shape[0]
    diag = xp.arange(m)
    d2[diag, diag] = xp.inf  # a row is not its own neighbour
    lists_i = xp.full((m, k), -1, dtype=xp.int64)
    lists_d = xp.full((m, k), xp.inf, dtype=xp.float32)
    lo, width = 0, b0
    while lo < m:
        hi = min(m, lo + width)
        stripe = d2[:, lo:hi]
        loose = _below(stripe, lists_d.max(axis=1), None) if lo else None
        if loose is None:
            lists_i, lists_d = _merge(lists_i, lists_d, xp.ascontiguousarray(stripe),
                                      start + lo, k, use_torch)
        else:
            r, c, v = loose
            lists_i, lists_d = _merge_ragged(lists_i, lists_d, r, c + start + lo, v,
                                             k, use_torch, grouped=True)
        lo, width = hi, (hi if lo else width)
    return lists_i, lists_d


def _all_pairs(data: Any, k: int, tile_bytes: int, use_torch: bool, precision: str = "fp32",
               ) -> tuple[Any, Any]:
    """k nearest rows of every row, self excluded, from the tiles on and above the diagonal.

    Small blocks on the diagonal give every row a provisional list by full selection; after
    that a tile only contributes its entries below the lists' current k-th distances (a few
    per cent), so most of the work is the matrix product.
    """
    xp = array_module(data)
    n = data.shape[0]
    low = Int8Rows(data) if precision == "int8" else None
    norms = squared_norms(data)
    bump = zero_rows_apart(norms) - norms  # 1 for a zero row among unit rows, else 0
    sq = (norms if low is None else low.sq) + bump
    b = max(1, min(n, int((tile_bytes // 4) ** 0.5)))
    b0 = min(b, max(1024, k + 1))
    blocks = [slice(s, min(s + b, n)) for s in range(0, n, b)]
    best_i, best_d = [], []
    for blk in blocks:
        lists_i, lists_d = _diagonal(_tile(data, sq, blk, blk, low), blk.start, k, b0,
                                     use_torch)
        best_i.append(lists_i)
        best_d.append(lists_d)
    for i, bi in enumerate(blocks):
        for j in range(i + 1, len(blocks)):
            bj = blocks[j]
            d2 = _tile(data, sq, bi, bj, low)
            thr_i, thr_j = best_d[i].max(axis=1), best_d[j].max(axis=1)  # k-th so far
            loose = _below(d2, thr_i, thr_j)
            if loose is None:
                best_i[i], best_d[i] = _merge(best_i[i], best_d[i], d2, bj.start, k, use_torch)
                best_i[j], best_d[j] = _merge(best_i[j], best_d[j], d2, bi.start, k, use_torch,
                                              axis=0)
                continue
            r, c, v = loose
            for_rows = v < thr_i[r]
            for_cols = v < thr_j[c]
            best_i[i], best_d[i] = _merge_ragged(best_i[i], best_d[i], r[for_rows],
                                                 c[for_rows] + bj.start, v[for_rows], k,
                                                 use_torch, grouped=True)
            best_i[j], best_d[j] = _merge_ragged(best_i[j], best_d[j], c[for_cols],
                                                 r[for_cols] + bi.start, v[for_cols], k,
                                                 use_torch)
    idx = xp.concatenate(best_i, axis=0)
    d2 = xp.concatenate(best_d, axis=0)
    by_idx = xp.argsort(idx, axis=1)  # final order: distance, then index
    idx, d2 = xp.take_along_axis(idx, by_idx, axis=1), xp.take_along_axis(d2, by_idx, axis=1)
    by_d = _stable_argsort(d2, axis=1)
    idx, d2 = xp.take_along_axis(idx, by_d, axis=1), xp.take_along_axis(d2, by_d, axis=1)
    return idx, xp.sqrt(xp.maximum(d2, 0)).astype(xp.float32, copy=False)


def knn(data: Any, k: int, queries: Any | None = None, query_ids: Any | None = None,
        tile_bytes: int | None = None, use_torch: bool = True, precision: str = "fp32",
        ) -> tuple[Any, Any]:
    """Indices (int64) and euclidean distances (float32) of the ``k`` nearest rows of ``data``.

    With ``queries=None`` every row of ``data`` is a query and each row's own index is left
    out. Otherwise ``query_ids`` (the queries' row numbers in ``data``, if they are rows of it)
    are left out of their own neighbour lists. Returns arrays of the same module as ``data``,
    sorted by distance, equal distances by index. ``tile_bytes`` bounds the distance tile
    (default :data:`TILE_BYTES` for the array's module); ``use_torch=False`` selects with the
    array module's own ``argpartition``. ``precision="int8"`` (all rows, on the CPU) takes
    the products in int8 (module docstring). Among unit rows (the cosine metric) an all-zero
    row is as far from every row as an orthogonal one (:func:`zero_rows_apart`).
    """
    xp = array_module(data)
    tile_bytes = tile_bytes or TILE_BYTES[xp.__name__]
    m = data.shape[0]
    if queries is None:
        if not 0 < k < m:
            raise ValueError(f"k = {k} needs 0 < k < {m} (the number of rows)")
        return _all_pairs(data, k, tile_bytes, use_torch, precision)
    extra = 1 if query_ids is not None else 0
    if not 0 < k <= m - extra:
        raise ValueError(f"k = {k} needs 0 < k <= {m - extra}")
    n = queries.shape[0]
    raw_data = squared_norms(data)
    raw_queries = squared_norms(queries)
    sq_data = zero_rows_apart(raw_data, raw_queries)
    sq_queries = zero_rows_apart(raw_queries, raw_data)
    block = max(1, min(n, tile_bytes // (4 * m)))
    out_idx = xp.empty((n, k), dtype=xp.int64)
    out_dist = xp.empty((n, k), dtype=xp.float32)
    for start in range(0, n, block):
        q = queries[start:start + block]
        d2 = q @ data.T
        d2 *= -2.0
        d2 += sq_queries[start:start + block, None]
        d2 += sq_data[None, :]
        if query_ids is not None:
            rows = xp.arange(q.shape[0])
            d2[rows, query_ids[start:start + block]] = xp.inf
        idx, dist = smallest(d2, k, use_torch)
        out_idx[start:start + block] = idx
        out_dist[start:start + block] = xp.sqrt(xp.maximum(dist, 0))
    return out_idx, out_dist


def map_knn(points: Any, k: int, ids: Any | None = None) -> Any:
    """The ``k`` nearest other points on a 2-D (or 3-D) map, exact: of every point (a k-d
    tree, n × k int64 on the host), or with ``ids`` of those points only (blocked products
    in float64, on the points' own device; len(ids) × k)."""
    if ids is not None:
        return knn(points, k, queries=points[ids], query_ids=ids)[0]
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    _, idx = cKDTree(pts).query(pts, k=k + 1)
    idx = np.asarray(idx, dtype=np.int64).reshape(len(pts), k + 1)
    own = idx == np.arange(len(pts))[:, None]
    own[~own.any(axis=1), -1] = True
    return idx[~own].reshape(len(pts), k)


def shared_counts(a: Any, b: Any, chunk: int = 8192) -> Any:
    """Per row, how many entries row ``i`` of ``a`` and row ``i`` of ``b`` have in common
    (rows hold distinct entries); numpy or cupy, ``chunk`` rows at a time."""
    xp = array_module(a)
    out = xp.empty(a.shape[0], dtype=xp.int64)
    for start in range(0, a.shape[0], chunk):
        x, y = a[start:start + chunk], b[start:start + chunk]
        out[start:start + chunk] = (x[:, :, None] == y[:, None, :]).any(axis=2).sum(axis=1)
    return out


def pair_products(X: Any, idx: Any) -> tuple[Any, Any]:
    """Dot products of each row of ``X`` with its rows ``idx[i]`` (n, k), and each row's
    squared norm, in float32 and ``X``'s module, block by block (no (n, k, d) array is
    held)."""
    xp = array_module(X)
    n, k = idx.shape
    dots = xp.empty((n, k), dtype=xp.float32)
    sq = squared_norms(X).astype(xp.float32)
    block = max(1, PAIR_BLOCK_BYTES // max(1, 4 * k * X.shape[1]))
    for start in range(0, n, block):
        rows = X[start:start + block]
        dots[start:start + block] = xp.einsum("nd,nkd->nk", rows, X[idx[start:start + block]])
    return dots, sq
