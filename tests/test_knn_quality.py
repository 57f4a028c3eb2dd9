"""Exact kNN against a brute-force reference, and the kNN-preservation score's range."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from job.knn import knn, l2_normalise, smallest
from job.quality import knn_preservation, sample_ids
from tests.numeric import Record, seed

# Tile sizes that force: one tile; several tiles (the ragged merge); 3-row tiles (k > tile).
TILES = [None, 4 * 40 * 40, 4 * 3 * 3]


def brute(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: float64 distances, self excluded, ordered by (distance, index)."""
    d = cdist(data.astype(np.float64), data.astype(np.float64))
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("tile_bytes", TILES)
@pytest.mark.parametrize("use_torch", [True, False])
def test_knn_equals_brute_force(tile_bytes: int | None, use_torch: bool) -> None:
    n = 60 if tile_bytes == TILES[-1] else 300
    data = np.random.default_rng(1).normal(size=(n, 12)).astype(np.float32)
    idx, dist = knn(data, 15, tile_bytes=tile_bytes, use_torch=use_torch)
    ref_idx, ref_dist = brute(data, 15)
    assert idx.shape == (n, 15) and idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-4)
    assert not (idx == np.arange(n)[:, None]).any()  # self excluded


@pytest.mark.parametrize("tile_bytes", TILES)
def test_knn_ties_on_a_grid(tile_bytes: int | None) -> None:
    """Integer grid points (exact float32 arithmetic) with duplicates: many equal distances."""
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6)), axis=-1).reshape(-1, 2)
    data = np.concatenate([g, g[:10]]).astype(np.float32)  # ten points twice
    k = 6
    idx, dist = knn(data, k, tile_bytes=tile_bytes)
    full = cdist(data, data)
    np.fill_diagonal(full, np.inf)
    ref_dist = np.sort(full, axis=1)[:, :k]
    np.testing.assert_allclose(dist, ref_dist, atol=1e-6)  # the same distances
    np.testing.assert_allclose(np.take_along_axis(full, idx, axis=1), dist, atol=1e-6)
    assert not (idx == np.arange(len(data))[:, None]).any()
    for row_i, row_d in zip(idx, dist, strict=True):
        assert len(set(row_i.tolist())) == k  # no neighbour twice
        keys = list(zip(row_d.tolist(), row_i.tolist(), strict=True))
        assert keys == sorted(keys)  # ordered by distance, then index
    # A duplicated point's first neighbour is its twin, at distance 0.
    assert dist[0, 0] == 0 and idx[0, 0] == 36 and idx[36, 0] == 0


def test_knn_queries_path_matches_all_pairs() -> None:
    data = np.random.default_rng(2).normal(size=(250, 8)).astype(np.float32)
    ids = np.array([0, 7, 100, 249])
    q_idx, q_dist = knn(data, 9, queries=data[ids], query_ids=ids)
    a_idx, a_dist = knn(data, 9, tile_bytes=4 * 50 * 50)
    np.testing.assert_array_equal(q_idx, a_idx[ids])
    np.testing.assert_allclose(q_dist, a_dist[ids], rtol=1e-5, atol=1e-5)
    # Outside queries: nothing is left out.
    o_idx, o_dist = knn(data, 1, queries=data[:3] + 1e-3)
    np.testing.assert_array_equal(o_idx[:, 0], [0, 1, 2])


def test_knn_rejects_a_bad_k() -> None:
    data = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="k = 5"):
        knn(data, 5)
    with pytest.raises(ValueError, match="k = 0"):
        knn(data, 0)


def test_smallest_orders_ties_by_position() -> None:
    d = np.array([[3.0, 1.0, 1.0, 0.5, 1.0]], dtype=np.float32)
    for use_torch in (True, False):
        pos, vals = smallest(d, 4, use_torch=use_torch)
        np.testing.assert_array_equal(pos, [[3, 1, 2, 4]])
        np.testing.assert_array_equal(vals, [[0.5, 1.0, 1.0, 1.0]])
        pos0, vals0 = smallest(np.ascontiguousarray(d.T), 2, use_torch=use_torch, axis=0)
        assert pos0[0, 0] == 3 and pos0[0, 1] in (1, 2, 4)  # which tie is kept may vary
        np.testing.assert_array_equal(vals0, [[0.5, 1.0]])


def test_l2_normalise_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.0]], dtype=np.float32)
    y = l2_normalise(x)
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], rtol=1e-6)
    assert y.dtype == np.float32


def test_preservation_is_one_for_an_identical_map() -> None:
    coords = np.random.default_rng(3).normal(size=(400, 2)).astype(np.float32)
    score = knn_preservation(coords, coords, k=10, sample=150)
    assert score["knn_preservation"] == 1.0
    assert score["sample"] == 150 and score["k"] == 10
    # A rotated, scaled, shifted copy keeps every neighbourhood too.
    rot = np.array([[0.6, -0.8], [0.8, 0.6]], dtype=np.float32)
    moved = knn_preservation(coords, coords @ rot * 40 + 7, k=10, sample=150)
    assert moved["knn_preservation"] == 1.0


@pytest.mark.numeric
def test_preservation_is_near_chance_for_a_random_map(record_property: Record) -> None:
    rng = np.random.default_rng(seed(4))
    data = rng.normal(size=(2000, 16)).astype(np.float32)
    coords = rng.normal(size=(2000, 2)).astype(np.float32)
    score = knn_preservation(data, coords, k=10, sample=500)
    assert score["chance"] == pytest.approx(10 / 1999)
    record_property("preservation_over_chance", score["knn_preservation"] / score["chance"])
    assert score["knn_preservation"] < 4 * score["chance"]  # measured 0.76-1.0 times chance


@pytest.mark.numeric
def test_preservation_uses_a_given_graph_and_matches_without_it(record_property: Record,
                                                                ) -> None:
    rng = np.random.default_rng(seed(5))
    data = rng.normal(size=(300, 6)).astype(np.float32)
    coords = data[:, :2] + 0.3 * rng.normal(size=(300, 2)).astype(np.float32)
    graph, _ = knn(data, 30)
    with_graph = knn_preservation(data, coords, k=10, sample=100, neighbours=graph)
    without = knn_preservation(data, coords, k=10, sample=100)
    assert with_graph == without
    record_property("preservation", without["knn_preservation"])
    # some of the 6-dim neighbourhoods survive 2 of the dims: measured 0.12-0.145, chance 0.033
    assert 2 * without["chance"] < without["knn_preservation"] < 0.5


def test_sample_is_fixed_sorted_and_complete_when_small() -> None:
    a, b = sample_ids(30522, 2000, 0), sample_ids(30522, 2000, 0)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 2000 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(sample_ids(50, 2000, 0), np.arange(50))


def test_preservation_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="rows"):
        knn_preservation(np.zeros((5, 3)), np.zeros((4, 2)))


@pytest.mark.gpu
def test_cupy_knn_and_quality_match_numpy() -> None:
    cupy = pytest.importorskip("cupy")
    data = np.random.default_rng(6).normal(size=(500, 32)).astype(np.float32)
    idx, dist = knn(data, 20, tile_bytes=4 * 128 * 128)
    g_idx, g_dist = knn(cupy.asarray(data), 20, tile_bytes=4 * 128 * 128)
    np.testing.assert_array_equal(cupy.asnumpy(g_idx), idx)
    np.testing.assert_allclose(cupy.asnumpy(g_dist), dist, rtol=1e-4, atol=1e-4)
    for use_torch in (True, False):
        c_idx, _ = knn(cupy.asarray(data), 20, use_torch=use_torch)
        np.testing.assert_array_equal(cupy.asnumpy(c_idx), idx)
    coords = data[:, :2]
    cpu = knn_preservation(data, coords, sample=200)
    gpu = knn_preservation(cupy.asarray(data), cupy.asarray(coords), sample=200)
    assert gpu == cpu


@pytest.mark.numeric
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_zero_row_among_unit_rows_is_nobodys_neighbour(precision: str,
                                                         record_property: Record) -> None:
    """An untrained all-zero row has no direction: among L2-normalised rows it sits at
    cosine 0 from every row (scikit-learn's convention), not at the formula's distance 1
    (cosine 0.5), which would put it in every list of a space whose neighbours are less
    alike than that."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(seed(8))
    data = l2_normalise(rng.normal(size=(300, 64)).astype(np.float32))
    data[[17, 200]] = 0.0
    idx, dist = knn(data, 5, precision=precision)
    others = np.setdiff1d(np.arange(300), [17, 200])
    assert not np.isin(idx[others], [17, 200]).any()
    sims = 1 - dist[others] ** 2 / 2
    record_property("least_kth_similarity", float(sims[:, -1].min()))
    # real neighbours are closer than an orthogonal row (0): measured 0.208-0.222 (k = 5 of
    # 298 random unit rows in 64 dims, seed sets 0-4, both precisions)
    assert (sims[:, -1] > 0.1).all()
    np.testing.assert_allclose(dist[17], np.sqrt(2), rtol=1e-5 if precision == "fp32" else 1e-2)
    q_idx, _ = knn(data, 5, queries=data[others[:20]], query_ids=others[:20])
    assert not np.isin(q_idx, [17, 200]).any()
    # raw (not normalised) rows keep plain euclidean distances: a zero row is near small rows
    raw = rng.normal(size=(50, 8)).astype(np.float32)
    raw[3] = 0.0
    raw_idx, raw_dist = knn(raw, 3)
    np.testing.assert_allclose(raw_dist[3, 0], np.linalg.norm(raw[raw_idx[3, 0]]), rtol=1e-5)


@pytest.mark.gpu
def test_cupy_puts_a_zero_row_apart_like_numpy() -> None:
    cupy = pytest.importorskip("cupy")
    data = l2_normalise(np.random.default_rng(9).normal(size=(400, 48)).astype(np.float32))
    data[[5, 99]] = 0.0
    idx, dist = knn(data, 7)
    g_idx, g_dist = knn(cupy.asarray(data), 7)
    g_idx, g_dist = cupy.asnumpy(g_idx), cupy.asnumpy(g_dist)
    real = np.setdiff1d(np.arange(400), [5, 99])
    np.testing.assert_array_equal(g_idx[real, :3], idx[real, :3])
    np.testing.assert_allclose(g_dist, dist, rtol=1e-4, atol=1e-4)
    assert not np.isin(g_idx[real], [5, 99]).any()
    # a zero row is at cosine 0 from all: its list is near-ties (norms rounded differently)
    np.testing.assert_allclose(g_dist[[5, 99]], np.sqrt(2), rtol=1e-5)
