"""The backend contract, run against every backend this machine has, and backend choice."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from job import gpu, reduce
from job.config import LayoutConfig
from job.knn import knn
from job.quality import knn_preservation
from job.reduce import BackendError, Layout, choose
from tests.numeric import Record, seed

N = 300
FAST = LayoutConfig(perplexity=10.0, early_exaggeration_iter=60, n_iter=120, n_jobs=1,
                    seed=seed(42))


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Six well-separated Gaussian clusters in 20 dimensions, 300 points."""
    rng = np.random.default_rng(seed(0))
    centres = rng.normal(scale=8.0, size=(6, 20))
    return (centres[np.arange(N) % 6] + rng.normal(size=(N, 20))).astype(np.float32)


class BackendContract:
    """Tests every backend must pass; subclasses name the backend and its quirks."""

    backend = ""
    deterministic = True  # bit-identical layouts for a seed
    uses_graph = True  # takes the shared kNN graph
    seeded = True  # the seed changes the layout (not so for a fully deterministic method)
    required = ("library", "perplexity", "random_state")

    @pytest.fixture(scope="class")
    @classmethod
    def layout(cls, blobs: np.ndarray) -> Layout:
        return cls.fit(blobs, FAST)

    @classmethod
    def fit(cls, X: np.ndarray, cfg: LayoutConfig) -> Layout:
        graph = knn(X, reduce.n_neighbors(cfg, X.shape[0])) if cls.uses_graph else None
        return reduce.fit(cls.device(X), cfg, cls.backend, graph)

    @staticmethod
    def device(X: np.ndarray) -> object:
        return X

    @pytest.mark.numeric
    def test_shape_dtype_finite(self, layout: Layout, record_property: Record) -> None:
        assert layout.backend == self.backend
        assert layout.coords.shape == (N, 2)
        assert layout.coords.dtype == np.float32
        assert np.isfinite(layout.coords).all()
        spread = float(np.ptp(layout.coords, axis=0).min())
        record_property("spread", spread)
        assert spread > 1.0  # spread out, not collapsed (measured 36-46; bench/numeric_spread.py)

    @pytest.mark.numeric
    def test_keeps_neighbourhoods(self, blobs: np.ndarray, layout: Layout,
                                  record_property: Record) -> None:
        score = knn_preservation(blobs, layout.coords, k=10, sample=N)
        record_property("preservation_over_chance", score["knn_preservation"] / score["chance"])
        # measured 13.6-14.8 times chance (seed sets 0-4, 1 and 2 threads, AVX2 kernels)
        assert score["knn_preservation"] > 10 * score["chance"]

    def test_records_effective_params(self, layout: Layout) -> None:
        for key in self.required:
            assert key in layout.params, key
        assert layout.params["random_state"] == FAST.seed

    def test_same_seed_same_layout(self, blobs: np.ndarray, layout: Layout) -> None:
        again = self.fit(blobs, FAST)
        if self.deterministic:
            np.testing.assert_array_equal(again.coords, layout.coords)
        else:  # documented as not bit-reproducible: the same quality instead
            first = knn_preservation(blobs, layout.coords, k=10, sample=N)
            second = knn_preservation(blobs, again.coords, k=10, sample=N)
            assert abs(first["knn_preservation"] - second["knn_preservation"]) < 0.1

    def test_another_seed_another_layout(self, blobs: np.ndarray, layout: Layout) -> None:
        if not self.seeded:
            pytest.skip(f"{self.backend}: PCA init and exact gradients use no randomness")
        other = self.fit(blobs, dataclasses.replace(FAST, seed=7))
        assert not np.array_equal(other.coords, layout.coords)


class TestOpenTSNE(BackendContract):
    backend = "opentsne"
    required = ("library", "perplexity", "random_state", "n_neighbors", "learning_rate",
                "momentum", "early_exaggeration", "early_exaggeration_iter", "n_iter")

    def test_learning_rate_per_phase(self, layout: Layout) -> None:
        assert layout.params["learning_rate"] == [200.0, 300.0]  # max(N / 12, 200), N
        assert layout.params["n_neighbors"] == 30  # 3 × perplexity

    @pytest.mark.numeric
    def test_threads_do_not_change_the_layout(self, blobs: np.ndarray, layout: Layout,
                                              record_property: Record) -> None:
        two = self.fit(blobs, dataclasses.replace(FAST, n_jobs=2))
        record_property("max_shift", float(np.abs(two.coords - layout.coords).max()))
        np.testing.assert_allclose(two.coords, layout.coords, atol=1e-3)  # measured: identical


class TestSklearn(BackendContract):
    backend = "sklearn"
    uses_graph = False
    seeded = False
    required = ("library", "perplexity", "random_state", "learning_rate_effective",
                "early_exaggeration_iter", "iterations_run", "method", "init")

    def test_post_method_params(self, layout: Layout) -> None:
        assert layout.params["method"] == "barnes_hut" and layout.params["init"] == "pca"
        assert layout.params["early_exaggeration_iter"] == 250  # fixed in scikit-learn


@pytest.mark.gpu
@pytest.mark.cuml
class TestCuml(BackendContract):
    backend = "cuml"
    deterministic = True  # cuML >= 26.08 with a seed: the deterministic FFT path (PR #8123)
    required = ("library", "perplexity", "random_state", "n_neighbors", "learning_rate_method",
                "pre_learning_rate", "post_learning_rate", "init", "method", "gpu")

    @staticmethod
    def device(X: np.ndarray) -> object:
        import cupy

        return cupy.asarray(X)


def test_cuml_params_pin_every_default() -> None:
    """The keyword arguments handed to cuML (checked against the real cuML in
    tests/test_cuml_contract.py)."""
    from job.reduce.cuml import tsne_params

    cfg = LayoutConfig()
    params = tsne_params(cfg, 30522)
    assert params["method"] == "fft" and params["init"] == "pca"
    assert params["learning_rate_method"] is None
    assert params["n_neighbors"] == 91 and params["perplexity"] == 30.0  # 90 + the row itself
    assert params["learning_rate"] == pytest.approx(30522 / 12)
    assert params["exaggeration_iter"] == cfg.early_exaggeration_iter
    assert params["max_iter"] == cfg.early_exaggeration_iter + cfg.n_iter
    assert params["random_state"] == 42 and params["square_distances"] is True
    assert (params["pre_momentum"], params["post_momentum"]) == (0.8, 0.8)
    small = tsne_params(dataclasses.replace(cfg, perplexity=50.0), 100)
    assert small["n_neighbors"] == 100 and small["perplexity"] == pytest.approx(33.0)
    fast = tsne_params(dataclasses.replace(cfg, deterministic=False), 100)
    assert fast["random_state"] is None  # cuML's fast, non-deterministic FFT path


def test_cuml_graph_has_the_row_itself_first(blobs: np.ndarray) -> None:
    """cuML >= 26.08 wants column 0 = the row at distance 0; the shared graph is left as is."""
    from job.reduce.cuml import arguments

    graph = knn(blobs, 60)  # wider than needed: the backend takes the first 3 × perplexity
    before = graph[1].copy()
    params, (idx, dist) = arguments(blobs, FAST, graph)
    assert params["n_neighbors"] == 31 and idx.shape == dist.shape == (N, 31)
    np.testing.assert_array_equal(idx[:, 0], np.arange(N))
    assert (dist[:, 0] == 0).all()
    np.testing.assert_array_equal(idx[:, 1:], graph[0][:, :30])
    np.testing.assert_array_equal(dist[:, 1:], graph[1][:, :30])
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    assert idx.flags.c_contiguous and dist.flags.c_contiguous
    assert not np.shares_memory(dist, graph[1])  # cuML squares what it gets in place
    np.testing.assert_array_equal(graph[1], before)


def test_unsupported_cuml_release_names_the_range() -> None:
    from job.reduce.cuml import unsupported

    assert unsupported("26.08.00") == "" and unsupported("26.10.01") == ""
    why = unsupported("25.10.00")
    assert "cuML 25.10.00 is installed" in why and "26.08 to 26.10" in why
    assert "vocabmap[cuml-cu12]" in why and "opentsne" in why
    assert unsupported("26.12.00") and unsupported("?")


def test_cuml_extras_pin_the_supported_range() -> None:
    """The extras install exactly the releases the contract tests pass on."""
    import tomllib
    from pathlib import Path

    from job.reduce.cuml import SUPPORTED

    (y0, m0), (y1, m1) = SUPPORTED
    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    for name in ("cuml-cu12", "cuml-cu13"):
        assert f"{name}>={y0}.{m0},<{y1}.{m1 + 1}" in extras[name], extras[name]


def test_choose_auto_says_why(caplog: pytest.LogCaptureFixture) -> None:
    ok, _ = gpu.cuda_available()
    has_cuml, _ = reduce.cuml_available()
    name, why = choose("auto")
    assert name == ("cuml" if ok and has_cuml else "opentsne")
    assert why  # a reason for the log
    if name == "opentsne":
        assert why.startswith("CPU: ")


def test_cuml_without_gpu_is_a_clear_error() -> None:
    ok, _ = gpu.cuda_available()
    if ok:
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendError, match="needs a CUDA GPU.*opentsne"):
        choose("cuml")


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(BackendError, match="auto, opentsne, cuml, sklearn"):
        choose("umap")


def test_fit_rejects_a_broken_layout(monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    import job.reduce.opentsne as backend

    def nan_fit(X: np.ndarray, cfg: LayoutConfig, graph: object) -> Layout:
        return Layout(np.full((X.shape[0], 2), np.nan, dtype=np.float32), "opentsne")

    monkeypatch.setattr(backend, "fit", nan_fit)
    with caplog.at_level(logging.INFO), pytest.raises(BackendError, match="bad layout"):
        reduce.fit(np.zeros((10, 3), dtype=np.float32), FAST, "opentsne")


def test_a_broken_cuml_install_is_loud(tmp_path: object, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """cuML present but failing to import (a missing CUDA library): a warning, not silence."""
    import sys
    from pathlib import Path

    pkg = Path(str(tmp_path)) / "cuml"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        'raise ImportError("libcuml++.so: cannot open shared object file")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cuml", raising=False)
    with caplog.at_level(logging.WARNING):
        ok, why = reduce.cuml_available()
    assert not ok and "does not import" in why and "libcuml++.so" in why
    assert "cuML is installed but does not import" in caplog.text


@pytest.mark.parametrize(("affinity", "want"), [({0}, 1), ({0, 1, 2}, 3), (None, 5)])
def test_all_cores_means_the_cores_this_process_may_use(
        monkeypatch: pytest.MonkeyPatch, affinity: set[int] | None, want: int) -> None:
    """n_jobs = -1 follows the CPU affinity (a Slurm allocation narrows it), on a machine of
    any size; where there is no affinity, every core of the machine."""
    import os

    def sched_getaffinity(pid: int) -> set[int]:
        if affinity is None:
            raise OSError("no affinity here")
        return affinity

    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    monkeypatch.setattr(os, "sched_getaffinity", sched_getaffinity, raising=False)
    assert reduce.threads(LayoutConfig(n_jobs=-1)) == want
    assert reduce.threads(LayoutConfig(n_jobs=2)) == 2
