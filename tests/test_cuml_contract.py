"""The contract between vocabmap and the real, installed cuML, checked without a GPU.

Everything vocabmap hands to ``cuml.manifold.TSNE`` comes from :func:`job.reduce.cuml.arguments`,
the function the job itself calls; cuML's own ``fit`` then validates it on the host
(tests/cuml_host.py) up to the first step that needs a CUDA device. ``make test`` runs this
file in the environment the ``[cuml-cu12]`` extra resolves to (scripts/cuml_env.py); where
cuML is not installed it is skipped with that reason. The layout itself (cuML's kernels) needs
a GPU: ``TestCuml`` in tests/test_backends.py and ``pytest -m gpu`` run it there.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from job.config import LayoutConfig
from job.knn import knn, l2_normalise
from job.reduce import cuml as backend
from job.runread import Manifest
from tests.cuml_host import DeviceBoundary, fit_until_device

pytestmark = pytest.mark.cuml

DEFAULT_SHAPE = (30522, 384)  # the embedded default's vocabulary


def _estimator(params: dict[str, Any]) -> Any:
    from cuml.manifold import TSNE

    return TSNE(**params)


def _accepted(X: np.ndarray, cfg: LayoutConfig, graph: tuple[Any, Any] | None = None,
              ) -> tuple[dict[str, Any], tuple[Any, Any], DeviceBoundary]:
    """What vocabmap sends for ``X``, and what cuML's fit made of it; any warning fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # deprecations, thresholding, renamed parameters
        params, sent = backend.arguments(X, cfg, graph)
        parsed = fit_until_device(_estimator(params), X, sent)
    return params, sent, parsed


def _check_graph(params: dict[str, Any], sent: tuple[Any, Any], parsed: DeviceBoundary,
                 n: int) -> None:
    """cuML used every column sent, unchanged: no clamping, no trimming, self first."""
    k1 = params["n_neighbors"]
    assert (parsed.n_samples, parsed.n_neighbors) == (n, k1)
    assert parsed.indices.dtype == np.int64 and parsed.distances.dtype == np.float32
    np.testing.assert_array_equal(parsed.indices.reshape(n, k1), sent[0])
    np.testing.assert_array_equal(parsed.distances.reshape(n, k1), sent[1])
    np.testing.assert_array_equal(sent[0][:, 0], np.arange(n))


def test_installed_cuml_is_a_supported_release() -> None:
    import cuml

    assert backend.unsupported(cuml.__version__) == "", cuml.__version__


def test_every_parameter_is_a_cuml_parameter() -> None:
    """cuML echoes each argument back unchanged (none renamed, dropped or defaulted)."""
    params = backend.tsne_params(LayoutConfig(), DEFAULT_SHAPE[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _estimator(params)
    echoed = model.get_params()
    for name, value in params.items():
        assert name in echoed, f"cuML has no parameter {name!r}"
        assert echoed[name] == value, name


@pytest.fixture(scope="module")
def default_sized() -> np.ndarray:
    """A matrix of the embedded default's shape with cluster structure, L2-normalised."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, DEFAULT_SHAPE[1]))
    rows = centres[rng.integers(0, 300, DEFAULT_SHAPE[0])]
    return l2_normalise((rows + rng.normal(scale=0.5, size=DEFAULT_SHAPE)).astype(np.float32))


def test_default_size_is_accepted_as_sent(default_sized: np.ndarray) -> None:
    cfg = LayoutConfig()
    params, sent, parsed = _accepted(default_sized, cfg)
    _check_graph(params, sent, parsed, DEFAULT_SHAPE[0])
    assert params["n_neighbors"] == 91  # 3 × perplexity + the row itself
    assert params["random_state"] == cfg.seed  # deterministic by default


def test_fast_path_is_accepted(default_sized: np.ndarray) -> None:
    graph = knn(default_sized[:2000], 90)
    cfg = dataclasses.replace(LayoutConfig(), deterministic=False)
    params, sent, parsed = _accepted(default_sized[:2000], cfg, graph)
    assert params["random_state"] is None
    _check_graph(params, sent, parsed, 2000)


@pytest.mark.parametrize("n", [2, 3, 12, 100])
def test_tiny_inputs_are_accepted_as_sent(n: int) -> None:
    """Perplexity and neighbours shrink with the input, within what cuML accepts."""
    rng = np.random.default_rng(n)
    X = l2_normalise(rng.normal(size=(n, 8)).astype(np.float32))
    params, sent, parsed = _accepted(X, LayoutConfig())
    _check_graph(params, sent, parsed, n)
    assert params["n_neighbors"] <= n


def test_cuml_refuses_a_graph_without_the_row_itself(default_sized: np.ndarray) -> None:
    """The check this file relies on is cuML's own: the graph vocabmap sent before 26.08
    support (neighbours only) is refused here, as it was on a GPU."""
    X = default_sized[:500]
    params, (idx, dist) = backend.arguments(X, LayoutConfig(), None)
    params["n_neighbors"] -= 1
    with pytest.raises(ValueError, match="self references"):
        fit_until_device(_estimator(params), X, (idx[:, 1:].copy(), dist[:, 1:].copy()))


def test_cuml_refuses_what_it_should(default_sized: np.ndarray) -> None:
    """cuML's fit-time validation runs here: a bad parameter fails before the device."""
    X = default_sized[:200]
    params, sent = backend.arguments(X, LayoutConfig(), None)
    with pytest.raises(ValueError, match="momentum"):
        fit_until_device(_estimator(params | {"post_momentum": 1.5}), X, sent)
    with pytest.raises(ValueError, match="init"):
        fit_until_device(_estimator(params | {"init": "spectral"}), X, sent)


def test_effective_params_record_version_and_self_column() -> None:
    import cuml

    params = backend.tsne_params(LayoutConfig(), 1000)
    model = _estimator(params)
    model.kl_divergence_, model.n_iter_ = 0.0, 120  # stopped early: KL not computed
    record = backend.effective_params(params, model, cuml.__version__, [], "stand-in", "cosine")
    assert record["version"] == cuml.__version__ and record["knn_self_column_sent"] is True
    assert record["kl_divergence"] is None and record["iterations_run"] == 120
    assert record["deterministic"] is True
    assert record["post_learning_rate"] == 2 * record["pre_learning_rate"]
    json.dumps(record)  # lands in the manifest as it is


def test_whole_job_on_the_cuml_backend(tmp_path: Path, fast_config: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The job end to end in this environment (cuML's pandas, pyarrow, numpy, numba) with
    backend = 'cuml': only the device stands in. The upload keeps the matrix on the host, and
    cuML's fit runs on the host up to the device, then the stand-in returns the first two
    principal components as the layout."""
    from job import cli, gpu

    monkeypatch.setattr(gpu, "cuda_available", lambda: (True, "host stand-in"))
    monkeypatch.setattr(gpu, "gpu_name", lambda: "host stand-in")
    monkeypatch.setattr(gpu, "to_device", lambda matrix: np.asarray(matrix, np.float32))
    monkeypatch.setattr(gpu, "device_info", lambda: {"kind": "host stand-in"})
    reached: list[DeviceBoundary] = []

    def on_host(model: Any, X: np.ndarray, graph: tuple[Any, Any]) -> np.ndarray:
        reached.append(fit_until_device(model, X, graph))
        centred = X - X.mean(axis=0)
        return (centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T) * 50

    monkeypatch.setattr(backend, "fit_on_device", on_host)
    config = fast_config.read_text().replace("[layout]", '[layout]\nbackend = "cuml"')
    (tmp_path / "cuml.toml").write_text(config)
    assert cli.main(["run", str(tmp_path / "cuml.toml")]) == 0
    assert len(reached) == 1
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = Manifest.read(run_dir)
    import cuml

    def used(key: str) -> object:
        return manifest.value("backend", "effective_params", key)

    assert manifest.value("backend", "name") == "cuml"
    assert used("version") == cuml.__version__ and used("knn_self_column_sent") is True
    assert used("n_neighbors") == reached[0].n_neighbors == 16  # 3 × perplexity 5, + itself
    assert manifest.value("environment", "libraries", "cuml-cu12")
    assert (run_dir / "overview.png").is_file() and (run_dir / "layout.parquet").is_file()
