"""Both ends of a model: ``matrix = "input" | "output"`` on tiny models transformers saves.

An untied Llama (bf16, sharded) whose input and output rows differ by construction, a tied
GPT-2, a ``.bin`` checkpoint; the manifest's ``model.matrix`` / ``model.tied``, the run key,
the titles, the under-trained score of an untied model, and input vs output in ``compare``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from job import cli, pipeline, rundir, source, undertrained, weights
from job import config as config_mod
from job.compare import compare
from job.config import ModelConfig
from job.runread import Manifest
from tests import numeric
from tests.builders import bin_copy, tiny_gpt2, twin_llama
from tests.conftest import FAST_TOML

FAST = FAST_TOML.replace('zooms = [{{ name = "days", anchor = "monday", neighbours = 12 }}]',
                         "")


def _config(model: Path, out: Path) -> config_mod.Config:
    path = out.parent / f"{out.name}.toml"
    path.write_text(FAST.format(model=model, out=out), encoding="utf-8")
    return config_mod.load(path)


def _run(model: Path, out: Path, matrix: str) -> Path:
    cfg = _config(model, out)
    return pipeline.run_model(dataclasses.replace(cfg.model, matrix=matrix), cfg)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, list]:
    """The untied Llama with its output twins and input twins."""
    return twin_llama(tmp_path_factory.mktemp("models") / "twin", seed=numeric.seed())


@pytest.fixture(scope="module")
def twin_runs(twin: tuple[Path, list, list], tmp_path_factory: pytest.TempPathFactory,
              ) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs") / "runs"
    return {m: _run(twin[0], out, m) for m in ("input", "output")}


def _neighbour_pairs(folder: Path, pairs: list[tuple[int, int]], k: int = 10) -> int:
    """How many of ``pairs`` (a, b) have b among a's first k neighbours."""
    near = pd.read_parquet(folder / rundir.NEIGHBOURS)
    near = near[near["rank"] <= k]
    found = set(zip(near["token_id"], near["neighbour_id"], strict=True))
    return sum((a, b) in found for a, b in pairs)


@pytest.mark.numeric
def test_untied_output_map_shows_the_output_neighbours(twin: tuple[Path, list, list],
                                                       twin_runs: dict[str, Path]) -> None:
    """Tokens that are twins only in the output matrix are neighbours in the output map and
    not in the input map, and the other way round."""
    _, out_twins, in_twins = twin
    assert _neighbour_pairs(twin_runs["output"], out_twins) == len(out_twins)
    assert _neighbour_pairs(twin_runs["input"], in_twins) == len(in_twins)
    # independent random rows: a pair is among 10 of ~500 neighbours by chance (2 %); seed
    # set 0 found 0 and 0, and seed sets 1 and 2 pass
    assert _neighbour_pairs(twin_runs["input"], out_twins) <= 2
    assert _neighbour_pairs(twin_runs["output"], in_twins) <= 2


def test_manifest_records_the_matrix_of_a_sharded_bf16_untied_model(
        twin_runs: dict[str, Path]) -> None:
    facts = {m: Manifest.read(f) for m, f in twin_runs.items()}
    for matrix, tensor in (("input", "model.embed_tokens.weight"),
                           ("output", "lm_head.weight")):
        model = facts[matrix].data["model"]
        assert (model["matrix"], model["tied"], model["tensor"]) == (matrix, False, tensor)
        assert model["stored_dtype"] == "torch.bfloat16" and model["output_bias"] is None
        assert facts[matrix].model.matrix == matrix and facts[matrix].model.tied is False
    assert twin_runs["output"].name.startswith("twin-output-")
    assert twin_runs["input"].name.rsplit("-", 1)[0] == "twin"
    # the output map's titles say so; the input map's are as before
    for zoom in facts["output"].rendered["zooms"]:
        assert zoom["title"].startswith("twin · output matrix: ")
    for zoom in facts["input"].rendered["zooms"]:
        assert zoom["title"].startswith("twin: ")
    assert "twin · output matrix" in (twin_runs["output"] / "map.html").read_text()


def test_untied_score_reads_both_matrices(twin_runs: dict[str, Path]) -> None:
    """Both runs of an untied model score the same tokens the same way."""
    scored = [Manifest.read(f).data["undertrained"] for f in twin_runs.values()]
    assert [s["matrix"] for s in scored] == ["input+output"] * 2
    assert scored[0]["per_matrix"] == scored[1]["per_matrix"]
    tables = [pd.read_parquet(f / rundir.LAYOUT).set_index("token_id") for f in
              twin_runs.values()]
    assert np.allclose(tables[0][undertrained.COLUMN], tables[1].loc[tables[0].index,
                                                                       undertrained.COLUMN])


def test_input_run_key_is_unchanged() -> None:
    """An input run's key is the hash it had before ``matrix`` existed (its run directory is
    reused); an output run's differs."""
    cfg = config_mod.Config()
    model = ModelConfig(id="some/model")
    before = {"model": model.id, "revision": model.revision,
              "tokens": dataclasses.asdict(cfg.tokens), "layout": dataclasses.asdict(cfg.layout)}
    old = hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()
    assert rundir.run_key(model, cfg) == old[:12]
    output = dataclasses.replace(model, matrix="output")
    assert rundir.run_key(output, cfg) != old[:12]
    assert rundir.run_dir(output, cfg).name.startswith("model-output-")


def test_tied_model_maps_the_same_rows(tmp_path: Path) -> None:
    """A tied GPT-2: the output map is the input map (same seed, same layout), tied: true."""
    folder = tiny_gpt2(tmp_path / "gpt2", seed=numeric.seed())
    runs = {m: _run(folder, tmp_path / "runs", m) for m in ("input", "output")}
    models = {m: Manifest.read(f).data["model"] for m, f in runs.items()}
    assert models["output"]["tied"] is True and models["input"]["tied"] is True
    assert models["output"]["tensor"] == models["input"]["tensor"]
    layouts = [pd.read_parquet(f / rundir.LAYOUT) for f in runs.values()]
    assert np.array_equal(layouts[0][["x", "y"]].to_numpy(), layouts[1][["x", "y"]].to_numpy())
    assert Manifest.read(runs["output"]).data["undertrained"]["matrix"] == "input"


def test_bin_checkpoint_reads_get_output_embeddings(twin: tuple[Path, list, list],
                                                    tmp_path: Path) -> None:
    binary = bin_copy(twin[0], tmp_path / "twin-bin")
    assert weights.tensor_files(binary) is None
    for matrix in ("input", "output"):
        from_bin = source.load(ModelConfig(id=str(binary), matrix=matrix))
        from_safetensors = source.load(ModelConfig(id=str(twin[0]), matrix=matrix))
        assert from_bin.method == "automodel" and from_bin.tied is False
        assert np.array_equal(from_bin.matrix, from_safetensors.matrix)
        assert np.array_equal(from_bin.other, from_safetensors.other)


def test_output_bias_is_recorded_not_added(tmp_path: Path) -> None:
    """A checkpoint with ``lm_head.bias``: the manifest's facts of it, rows unchanged."""
    from safetensors.numpy import load_file, save_file

    folder, _, _ = twin_llama(tmp_path / "biased", dtype=None, shard=None)
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    rows = tensors["lm_head.weight"].shape[0]
    tensors["lm_head.bias"] = np.linspace(-1, 1, rows).astype(np.float32)
    save_file(tensors, str(path), metadata={"format": "pt"})
    emb = source.load(ModelConfig(id=str(folder), matrix="output"))
    assert emb.bias is not None
    assert (emb.bias["tensor"], emb.bias["size"], emb.bias["added"]) == ("lm_head.bias", rows,
                                                                         False)
    assert (emb.bias["min"], emb.bias["max"]) == (-1.0, 1.0)
    n = emb.matrix.shape[0]
    assert np.array_equal(emb.matrix, tensors["lm_head.weight"][:n])


def test_bad_matrix_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(config_mod.ConfigError, match=r"matrix = 'lm_head' is not allowed; "
                       r"choose one of: 'input', 'output'"):
        config_mod.from_dict({"model": {"id": "x", "matrix": "lm_head"}})
    with pytest.raises(config_mod.ConfigError, match="contextual run does not read"):
        config_mod.from_dict({"model": {"id": "x", "matrix": "output",
                                        "embeddings": "contextual"},
                              "contextual": {"corpus": ["c.txt"]}})
    path = tmp_path / "c.toml"
    path.write_text('[[models]]\nid = "x"\n[[models]]\nid = "y"\n', encoding="utf-8")
    both = config_mod.with_overrides(config_mod.load(path), matrix="output")
    assert [m.matrix for m in both.models] == ["output", "output"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", str(path), "--matrix", "unembedding"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'unembedding'" in capsys.readouterr().err


@pytest.mark.numeric
def test_input_vs_output_compare_token_for_token(twin_runs: dict[str, Path],
                                                 tmp_path: Path) -> None:
    """Two runs of one model, input and output: matched by token id, every matchable token
    shared, the output map laid out again from the input map; the random twin model's two
    matrices agree no more than shuffled tokens (calibrated 0; seed sets 0-2: 0.000)."""
    cfg = config_mod.CompareConfig(aligned=True, permutations=30)
    result = compare([twin_runs["input"], twin_runs["output"]], tmp_path / "cmp", cfg)
    (pair,) = result["pairs"]
    runs = result["runs"]
    assert pair["shared"] == runs[0]["keys"] == runs[1]["keys"]
    assert [r["label"] for r in runs] == ["twin", "twin-output"]
    assert pair["original"][0]["calibrated"] < 0.2 and pair["map"][0]["calibrated"] < 0.2
    moved = pd.read_parquet(tmp_path / "cmp" / "tokens_1.parquet")
    assert len(moved) == pair["shared"]
    assert result["aligned"][1]["tokens"] == runs[1]["tokens"]
