"""The neighbour-search route: exact where cheap, int8 products above the threshold where
this CPU makes them pay; the int8 search itself; what the manifest says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from job import cli, search
from job.knn import knn, l2_normalise
from job.quality import knn_preservation
from job.runread import Manifest
from tests.numeric import Record, seed


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit rows around 40 centres: neighbour structure, not noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    rows = centres[rng.integers(0, 40, n)] + rng.normal(scale=0.6, size=(n, d))
    return l2_normalise(rows.astype(np.float32))


def test_the_embedded_default_stays_exact() -> None:
    route = search.choose_search("auto", 30522, 384, on_gpu=False)
    assert route.name == "exact" and route.exact and "below" in route.why


@pytest.mark.parametrize("speedup", [3.0, 1.2])
def test_above_the_threshold_int8_only_where_it_pays(monkeypatch: pytest.MonkeyPatch,
                                                     speedup: float) -> None:
    monkeypatch.setattr(search, "int8_speedup", lambda d: speedup)
    route = search.choose_search("auto", 131072, 5120, on_gpu=False)
    if speedup >= search.MIN_SPEEDUP:
        assert (route.name, route.precision, route.exact) == ("int8", "int8", False)
        assert "3.0x faster" in route.why
    else:
        assert route.name == "exact" and "only 1.2x" in route.why


def test_just_below_and_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "int8_speedup", lambda d: 4.0)
    d = 768
    n_edge = int((search.EXACT_BELOW / d) ** 0.5)
    assert search.choose_search("auto", n_edge - 10, d, on_gpu=False).name == "exact"
    assert search.choose_search("auto", n_edge + 10, d, on_gpu=False).name == "int8"


def test_gpu_and_forced_routes() -> None:
    assert search.choose_search("auto", 256000, 4096, on_gpu=True).name == "exact"
    assert search.choose_search("exact", 256000, 4096, on_gpu=False).name == "exact"
    assert search.choose_search("int8", 1000, 64, on_gpu=False).name == "int8"


def test_int8_speedup_is_measured() -> None:
    speedup = search.int8_speedup(256, rows=256, repeats=1)
    # 0 where this CPU's torch has no int8 product; either way a finite figure
    assert np.isfinite(speedup) and speedup >= 0


def test_a_cpu_without_int8_products_keeps_the_exact_search(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's other answer, on every machine: torch's int8 product missing or failing."""
    torch = pytest.importorskip("torch")

    def no_int8(a: object, b: object) -> object:
        raise RuntimeError("_int_mm: not supported on this CPU")

    monkeypatch.setattr(torch, "_int_mm", no_int8)
    search.int8_speedup.cache_clear()
    try:
        assert search.int8_speedup(384) == 0.0
        route = search.choose_search("auto", 131072, 5120, on_gpu=False)
    finally:
        search.int8_speedup.cache_clear()
    assert route.name == "exact" and "only 0.0x faster" in route.why


@pytest.mark.numeric
def test_int8_search_keeps_almost_every_neighbour(record_property: Record) -> None:
    X = clustered(3000, 256, seed(0))
    exact_idx, exact_d = knn(X, 30)
    idx, dist = knn(X, 30, precision="int8", tile_bytes=4 * 700 * 700)  # several tiles
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(idx, exact_idx, strict=True)]) / 30
    record_property("recall", recall)
    record_property("largest_distance_error", float(np.abs(dist - exact_d).max()))
    assert recall > 0.95, recall  # measured 0.988-0.989
    assert not (idx == np.arange(3000)[:, None]).any()  # self excluded
    assert np.abs(dist - exact_d).max() < 0.02  # unit rows, int8 products: 0.0033-0.0043
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.numeric
def test_quality_measures_an_approximate_graphs_recall(record_property: Record) -> None:
    X = clustered(1500, 64, seed(0))
    exact_idx, _ = knn(X, 30)
    rng = np.random.default_rng(seed(0))
    damaged = exact_idx.copy()
    damaged[:, -3:] = rng.integers(0, 1500, size=(1500, 3))  # the last 3 of 30 are wrong
    coords = X[:, :2] * 10
    score = knn_preservation(X, coords, k=10, sample=500, neighbours=damaged, exact=False)
    record_property("graph_recall", score["graph_recall"])
    assert score["graph_recall"] == pytest.approx(27 / 30, abs=0.01)  # measured 0.900-0.9002
    exact = knn_preservation(X, coords, k=10, sample=500, neighbours=exact_idx)
    assert "graph_recall" not in exact
    assert score["knn_preservation"] == pytest.approx(exact["knn_preservation"])


@pytest.mark.numeric
def test_a_job_above_the_threshold_records_its_route(fast_config: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     record_property: Record) -> None:
    monkeypatch.setattr(search, "EXACT_BELOW", 1.0)
    monkeypatch.setattr(search, "int8_speedup", lambda d: 3.0)
    assert cli.main(["run", str(fast_config)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = Manifest.read(run_dir)
    assert manifest.value("knn", "name") == "int8" and not manifest.value("knn", "exact")
    record_property("graph_recall", manifest.value("quality", "graph_recall"))
    assert 0.8 <= manifest.value("quality", "graph_recall") <= 1.0  # measured 0.985-0.987
    assert set(manifest.value("peak_rss_mib_per_stage")) >= {"load", "knn", "layout", "render"}
