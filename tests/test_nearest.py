"""neighbours.parquet: each token's original-space neighbours, taken from the layout's kNN
graph, checked against brute force; the file, its reuse on a rerun, and the CLI command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from job import cli, neighbours_file, rundir, runread
from job import config as config_mod
from job.knn import knn, l2_normalise
from job.runread import Manifest
from tests.numeric import Record, seed


def brute_force(X: np.ndarray, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of each row and their cosine similarities, by a full matrix."""
    unit = l2_normalise(X)  # a zero row (an untrained [PAD]) stays zero
    cos = unit @ unit.T
    if metric == "cosine":
        d = -cos.astype(np.float64)
    else:
        d = ((X[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(cos, idx, axis=1)


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(seed(3))
    centres = rng.normal(size=(12, 24))
    X = centres[rng.integers(0, 12, 600)] + 0.4 * rng.normal(size=(600, 24))
    return (X * rng.uniform(0.3, 2.0, size=(600, 1))).astype(np.float32)  # uneven norms


@pytest.mark.numeric
@pytest.mark.parametrize("route", ["exact", "int8", "none"])
def test_neighbours_equal_brute_force(matrix: np.ndarray, route: str,
                                      record_property: Record) -> None:
    X = l2_normalise(matrix.copy())
    graph = {"exact": lambda: knn(X, 30), "int8": lambda: knn(X, 30, precision="int8"),
             "none": lambda: None}[route]()  # none: the sklearn backend has no graph
    idx, sim, how = neighbours_file.from_graph(X, graph, 10, "cosine", exact=route != "int8")
    want_idx, want_sim = brute_force(matrix, 10)
    record_property("same_place", (idx == want_idx).mean())
    # near-ties in float32 may swap places: measured 0.9997-1 (seed sets 0-4, both threads,
    # AVX2 kernels)
    assert idx.shape == (600, 10) and (idx == want_idx).mean() > 0.995
    assert np.allclose(sim, np.take_along_axis(
        (X @ X.T), idx, axis=1), atol=1e-5)
    assert np.allclose(np.sort(sim, axis=1), np.sort(want_sim, axis=1), atol=1e-4)
    assert how["exact"] == (route != "int8")


@pytest.mark.numeric
def test_euclidean_metric_orders_by_distance_and_reports_cosine(
        matrix: np.ndarray, record_property: Record) -> None:
    idx, sim, _ = neighbours_file.from_graph(matrix, knn(matrix, 30), 10, "euclidean", exact=True)
    want_idx, want_sim = brute_force(matrix, 10, "euclidean")
    record_property("same_place", (idx == want_idx).mean())
    assert (idx == want_idx).mean() > 0.995  # measured 1
    assert np.allclose(sim, want_sim, atol=1e-4)


def test_map_neighbours_are_the_2d_nearest() -> None:
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(300, 2))
    idx = rng.integers(0, 300, size=(300, 5))
    d = ((coords[:, None] - coords[None]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :5]
    idx[:, 0] = near[:, 2]  # one sure map neighbour per row
    want = (idx[:, :, None] == near[:, None, :]).any(axis=2)
    got = neighbours_file.map_neighbours(coords, idx)
    assert (got == want).all() and got[:, 0].all()


def test_file_columns_metadata_and_slicing(tmp_path: Path, matrix: np.ndarray) -> None:
    X = l2_normalise(matrix.copy())
    ids = np.arange(1000, 1600)
    coords = np.random.default_rng(1).normal(size=(600, 2))
    table, meta = neighbours_file.build(X, knn(X, 30), coords, ids, 10, "cosine", True)
    neighbours_file.write(tmp_path / rundir.NEIGHBOURS, table, meta)
    back = runread.neighbours(tmp_path)
    assert list(back.columns) == ["token_id", "rank", "neighbour_id", "similarity",
                                  "map_neighbour"]
    assert [str(t) for t in back.dtypes] == ["int32", "int16", "int32", "float32", "bool"]
    assert len(back) == 6000 and back["token_id"].min() == 1000
    assert back.groupby("token_id")["rank"].apply(list).map(lambda r: r == list(
        range(1, 11))).all()
    assert (back.groupby("token_id")["similarity"].diff().dropna() <= 1e-6).all()
    stored = json.loads(pq.read_schema(tmp_path / rundir.NEIGHBOURS).metadata[b"vocabmap"])
    assert stored["k"] == 10 and stored["metric"] == "cosine" and stored["exact"] is True
    assert runread.neighbours_meta(tmp_path) == stored
    assert runread.neighbours(tmp_path, 3)["rank"].max() == 3
    with pytest.raises(runread.NeighbourError, match="rerun `python -m job run`"):
        runread.neighbours(tmp_path / "nowhere")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A small run directory: layout.parquet and neighbours.parquet of four tokens."""
    layout = pd.DataFrame({"token_id": [0, 1, 2, 3], "token": ["[CLS]", "tokyo", "##kyo", "東"],
                           "display": ["[CLS]", "tokyo", "kyo", "東"],
                           "x": [0.0, 1, 2, 3], "y": [0.0, 0, 0, 0]})
    layout.to_parquet(tmp_path / rundir.LAYOUT)
    near = neighbours_file.frame(np.arange(4), np.array([[1, 2], [2, 3], [1, 0], [1, 2]]),
                         np.array([[0.5, 0.4], [0.9, 0.2], [0.9, 0.1], [0.3, 0.25]],
                                  dtype=np.float32), np.array([[1, 0], [1, 1], [1, 0], [0, 0]],
                                                              dtype=bool))
    neighbours_file.write(tmp_path / rundir.NEIGHBOURS, near, {"k": 2, "metric": "cosine"})
    return tmp_path


def test_cli_lists_neighbours(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["neighbours", str(run_dir), "tokyo"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t") == ["rank", "similarity", "on_map", "token_id", "token"]
    assert out[1:] == ["1\t0.9000\tyes\t2\tkyo", "2\t0.2000\tyes\t3\t東"]
    assert cli.main(["neighbours", str(run_dir), "##kyo", "--k", "1"]) == 0  # raw token
    assert capsys.readouterr().out.splitlines()[1:] == ["1\t0.9000\tyes\t1\ttokyo"]
    assert cli.main(["neighbours", str(run_dir), "3"]) == 0  # a token id
    assert capsys.readouterr().out.splitlines()[1].endswith("\ttokyo")


@pytest.mark.parametrize(("token", "hint"), [("Tokyo", "did you mean: tokyo"),
                                             ("東京", "did you mean: 東"),
                                             ("zzz", "not in the model's vocabulary")])
def test_cli_token_not_found(run_dir: Path, capsys: pytest.CaptureFixture, token: str,
                             hint: str) -> None:
    assert cli.main(["neighbours", str(run_dir), token]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vocabmap: error: no token {token!r}")
    assert hint in err and "Traceback" not in err


def test_cli_run_dir_without_neighbours(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    (run_dir / rundir.NEIGHBOURS).unlink()
    assert cli.main(["neighbours", str(run_dir), "tokyo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"has no {rundir.NEIGHBOURS}" in err
    assert cli.main(["neighbours", str(run_dir / "missing"), "tokyo"]) == 2
    assert "has no layout.parquet" in capsys.readouterr().err


@pytest.mark.numeric
def test_run_writes_neighbours_and_a_rerun_restores_them(
        fast_config: Path, bert_dir: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture, record_property: Record) -> None:
    caplog.set_level(logging.INFO)
    assert cli.main(["run", str(fast_config)]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    first = runread.neighbours(folder)
    manifest = Manifest.read(folder)
    assert manifest.value("neighbours", "k") == 10
    assert manifest.value("neighbours", "file") == rundir.NEIGHBOURS
    layout = runread.layout(folder)
    # against brute force over the model's own matrix (cosine: the default metric)
    from job import source
    cfg = config_mod.load(fast_config)
    X = source.load(cfg.models[0]).matrix[layout["token_id"].to_numpy()]
    want_idx, want_sim = brute_force(X, 10)
    got = first["neighbour_id"].to_numpy().reshape(-1, 10)
    record_property("same_place", (got == layout["token_id"].to_numpy()[want_idx]).mean())
    # measured 0.9932 in every seed set: the tied lists of the all-zero [PAD] row and its kin
    assert (got == layout["token_id"].to_numpy()[want_idx]).mean() > 0.99
    assert np.allclose(first["similarity"].to_numpy().reshape(-1, 10), want_sim, atol=1e-4)

    # a run directory of the previous version: layout and facts, but no neighbours file
    (folder / rundir.NEIGHBOURS).unlink()
    caplog.clear()
    assert cli.main(["run", str(fast_config)]) == 0
    assert "reusing the finished layout" in caplog.text
    assert "neighbours.parquet is missing: searching the neighbours again" in caplog.text
    again = runread.neighbours(folder)
    # (an all-zero row, the untrained [PAD], has cosine 0 to every token: its order is a tie)
    tied = first.groupby("token_id")["similarity"].transform("max") == 0
    pd.testing.assert_frame_equal(again[~tied], first[~tied], check_exact=False, atol=1e-5)
    assert runread.layout(folder).equals(layout)  # the layout is kept
    caplog.clear()
    assert cli.main(["run", str(fast_config)]) == 0  # and now there is nothing to redo
    assert "searching the neighbours again" not in caplog.text


def test_sklearn_backend_gets_an_exact_search(fast_config: Path, capsys: pytest.CaptureFixture,
                                               ) -> None:
    """sklearn searches its own graph, so the neighbours are searched exactly for the file."""
    text = fast_config.read_text().replace("[layout]\n", "[layout]\nbackend = \"sklearn\"\n")
    fast_config.write_text(text)
    assert cli.main(["run", str(fast_config)]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    meta = runread.neighbours_meta(folder)
    assert meta["exact"] is True and meta["source"].startswith("exact search")
    assert len(runread.neighbours(folder)) == 10 * len(
        runread.layout(folder))


@pytest.mark.gpu
def test_neighbours_from_a_device_graph_equal_the_host_ones(matrix: np.ndarray) -> None:
    """The cuML path keeps X and the graph on the GPU: the lists come out the same."""
    cupy = pytest.importorskip("cupy")
    X = l2_normalise(matrix.copy())
    X[7] = 0.0  # an untrained row among them
    host = neighbours_file.from_graph(X, knn(X, 30), 10, "cosine", exact=True)
    gX = cupy.asarray(X)
    device = neighbours_file.from_graph(gX, knn(gX, 30), 10, "cosine", exact=True)
    assert isinstance(device[0], np.ndarray) and isinstance(device[1], np.ndarray)
    assert (device[0] == host[0]).mean() > 0.995
    np.testing.assert_allclose(device[1], host[1], atol=1e-5)
    assert not np.isin(device[0][np.arange(600) != 7], 7).any()
