"""`python -m job compare`: token matching, the measures, and a comparison of real tiny runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import procrustes as scipy_procrustes

from job import cli, pipeline, runread
from job.compare import agreement, core, metrics, pictures, runs
from job.compare.runs import token_keys
from job.config import load
from job.render import raster
from tests.numeric import Record, seed
from tests.pixels import grey, inked_at

TOML = """
[[models]]
id = "{model}"
[[models]]
id = "{model}"
name = "tiny-bert-again"
[layout]
perplexity = 5
early_exaggeration_iter = 50
n_iter = 100
seed = {seed}
[quality]
sample = 50
[render]
width = 200
height = 200
zoom_width = 200
zoom_height = 200
auto_zooms = 0
[output]
dir = "{out}"
"""


def test_keys_match_word_start_markers_across_families() -> None:
    # what tokens.split_token gives for "##ing" (WordPiece), "Ġthe" (byte-level BPE),
    # "▁the" (SentencePiece), "ing" inside a word, "[CLS]" and a byte piece
    table = pd.DataFrame({
        "display": ["ing", "the", "the", "ing", "[CLS]", "<0xE3>", "The"],
        "word_start": [False, True, True, False, True, False, True],
        "category": ["continuation", "word", "word", "continuation", "special", "byte",
                     "word"],
    })
    keys = token_keys(table).tolist()
    assert keys[0] == keys[3] == "ing"
    assert keys[1] == keys[2] == "▁the"
    assert keys[4] is None and keys[5] is None  # specials and bytes are never matched
    assert keys[6] == "▁The"  # case is kept


def test_keys_of_three_real_tokenizer_families_meet(tmp_path: Path) -> None:
    """WordPiece, GPT-2 byte-level BPE and SentencePiece-style BPE tables share keys."""
    from transformers import BertTokenizerFast

    from job.tokens import build_table
    from tests.builders import gpt2_tokenizer, llama_tokenizer, wordpiece_vocab

    vocab = wordpiece_vocab()
    tokenizers = {"wordpiece": BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}),
                  "bytelevel": gpt2_tokenizer(tmp_path / "gpt2"),
                  "sentencepiece": llama_tokenizer(tmp_path / "llama")}
    keys = {}
    for family, tok in tokenizers.items():
        table = build_table(tok, max(tok.get_vocab().values()) + 1)
        assert table.attrs["family"] == family
        keys[family] = set(token_keys(table).dropna())
    common = keys["wordpiece"] & keys["bytelevel"] & keys["sentencepiece"]
    # "1990" at a word start (1990 / Ġ1990 / ▁1990); "ing" inside a word (##ing / ing / ing)
    assert {"▁1990", "ing"} <= common
    assert not any(k.startswith(("##", "Ġ", "▁▁")) for ks in keys.values() for k in ks)


def test_procrustes_matches_scipy_and_undoes_a_similarity() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(80, 2))
    angle = 0.8
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moving = (ref @ rot) * 4.0 + [3.0, -2.0]
    moving[:, 0] *= -1  # a reflection too
    fit = metrics.procrustes(ref, moving)
    assert fit.disparity < 1e-12
    assert np.allclose(fit.apply(moving), ref)
    noisy = moving + rng.normal(scale=0.5, size=moving.shape)
    assert metrics.procrustes(ref, noisy).disparity == pytest.approx(
        scipy_procrustes(ref, noisy)[2], rel=1e-9)


@pytest.mark.numeric
def test_agreement_of_a_space_with_itself_calibrates_to_one(record_property: Record) -> None:
    rng = np.random.default_rng(seed(1))
    a = rng.normal(size=(400, 16)).astype(np.float32)
    na, nb = agreement.neighbour_lists(a, 10), agreement.neighbour_lists(a * 3.0, 10)
    tokens, (uniform,) = agreement.agreement(na, nb, permutations=50, alpha=0.05,
                                             seed=seed(0))
    assert (tokens == 1.0).all()
    assert uniform.observed == 1.0 and uniform.calibrated == 1.0
    assert uniform.p_value == pytest.approx(1 / 51)
    # a shuffle leaves a random k-subset: the null's mean is k / (n - 1) exactly on average
    record_property("null_mean_over_expected", uniform.null_mean / (10 / 399))
    record_property("null_std", uniform.null_std)
    # measured 0.98-1.03 times k / (n - 1), std 0.0026-0.0030 (bench/numeric_spread.py:
    # seed sets 0-4, 1 and 2 threads, AVX2 kernels)
    assert uniform.null_mean == pytest.approx(10 / 399, rel=0.1)
    assert 0 < uniform.null_std < 0.01


def _draws(rng: np.random.Generator, n: int, related: bool,
           ) -> list[list[agreement.Calibrated]]:
    """Agreement of ``n`` pairs of spaces (400 points, 16 dims): unrelated Gaussian clouds,
    or (``related``) four shared categories with independent positions inside them."""
    blocks = np.repeat(np.arange(4), 100)
    out = []
    for _ in range(n):
        centres = rng.normal(scale=10.0, size=(4, 16)) if related else np.zeros((4, 16))
        a = centres[blocks] + rng.normal(size=(400, 16))
        b = centres[blocks] + rng.normal(size=(400, 16))
        na, nb = agreement.neighbour_lists(a, 10), agreement.neighbour_lists(b, 10)
        out.append(agreement.agreement(na, nb, 100, 0.05, int(rng.integers(2**31)),
                                       blocks if related else None)[1])
    return out


@pytest.mark.numeric
def test_unrelated_spaces_calibrate_to_zero(record_property: Record) -> None:
    """Under the null a p-value is uniform: one pair in 20 falls at alpha = 0.05 by chance,
    on any machine, so the assertions are on 20 pairs."""
    results = [r[0] for r in _draws(np.random.default_rng(seed(2)), 20, related=False)]
    p = np.array([u.p_value for u in results])
    record_property("largest_observed", max(u.observed for u in results))
    record_property("significant", int((p <= 0.05).sum()))
    record_property("mean_p", float(p.mean()))
    # chance agreement is k / (n - 1) = 0.025; measured: largest 0.030-0.032, pairs at
    # p <= 0.05: 0-2, mean p 0.44-0.62 (seed sets 0-7)
    assert max(u.observed for u in results) < 0.06
    assert all(u.calibrated == 0.0 for u in results if u.p_value > 0.05)
    assert (p <= 0.05).sum() <= 4  # binomial(20, 0.05): P(5 or more) = 0.3 %
    assert 0.3 < p.mean() < 0.7  # uniform: mean 0.5, its sd over 20 pairs 0.065


@pytest.mark.numeric
def test_shared_categories_alone_beat_the_uniform_null_not_the_category_null(
        record_property: Record) -> None:
    """Two spaces that agree only on which category a token is in (same cluster centres,
    independent positions inside): the raw agreement is 4 times chance and the uniform null
    calls it significant; shuffling within categories shows there is nothing beyond that
    (a p-value uniform over 10 pairs, as in the test above)."""
    results = _draws(np.random.default_rng(seed(3)), 10, related=True)
    ratio = np.array([u.observed / u.null_mean for u, _ in results])
    within_p = np.array([w.p_value for _, w in results])
    record_property("smallest_observed_over_null", float(ratio.min()))
    record_property("smallest_calibrated", min(u.calibrated for u, _ in results))
    record_property("category_null_over_uniform",
                    min(w.null_mean / u.null_mean for u, w in results))
    record_property("category_significant", int((within_p <= 0.05).sum()))
    # 4 categories: 4 times chance; measured smallest ratio 3.53-3.80, smallest calibrated
    # 0.061-0.068, category null 3.9-4.0 times the uniform one, pairs significant against
    # it: 0-1 (seed sets 0-7); the uniform null's p-value is 1/101 every time
    assert ratio.mean() > 3.5 and (ratio > 2.5).all()
    assert all(u.p_value < 0.05 and u.calibrated > 0.0 for u, _ in results)
    assert all(w.null == "category" and w.null_mean > 3 * u.null_mean for u, w in results)
    assert (within_p <= 0.05).sum() <= 3  # binomial(10, 0.05): P(4 or more) = 0.1 %
    assert all(w.calibrated == 0.0 for _, w in results if w.p_value > 0.05)


def test_neighbour_lists_of_a_map_leave_out_the_token_even_on_duplicates() -> None:
    pts = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    lists = agreement.neighbour_lists(pts, 2)
    assert all(i not in row for i, row in enumerate(lists))
    assert set(lists[0]) == {1, 2} and set(lists[1]) == {0, 2}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path) -> tuple[Path, ...]:
    """The tiny BERT mapped once, and a copy of that run with its map rotated, scaled and
    jittered (same model, so the same original vectors; a different but related map)."""
    out = tmp_path_factory.mktemp("cmp")
    path = out / "tiny.toml"
    path.write_text(TOML.format(model=bert_dir, seed=seed(1), out=out / "runs"))
    cfg = load(path)
    first = pipeline.run_model(cfg.models[0], cfg)
    second = first.parent / "tiny-bert-again-0123456789ab"
    shutil.copytree(first, second)
    table = runread.layout(second)
    xy = table[["x", "y"]].to_numpy()
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    noise = np.random.default_rng(seed(0)).normal(scale=0.15 * xy.std(), size=xy.shape)
    table[["x", "y"]] = (xy @ rot) * 2.5 + 7.0 + noise
    table.to_parquet(second / "layout.parquet", index=False)
    return first, second


def assert_grid_draws(path: Path, folders: tuple[Path, ...], record_property: Record) -> None:
    """Each panel of the grid shows its map's points (turned onto the first map) where the
    panels' shared canvas puts them, and not a quarter of the panel to the right. Measured
    (seed sets 0-2): 1.0 of the points inked in each panel, 0.0-0.007 when shifted."""
    loaded = [runs.load(folder) for folder in folders]
    maps = [run.table.copy() for run in loaded]
    core.onto_first(maps, loaded)
    side = 700  # pictures.grid's panel
    canvas = raster.full_canvas(pd.concat([m[["x", "y"]] for m in maps]), side, side)
    pixels = grey(path)
    assert pixels.shape[1] == 2 * (side + pictures.GAP) + pictures.GAP  # two panels
    shift = canvas.box.size[0] / 4
    for j, table in enumerate(maps):  # a panel: its title strip, then the map
        origin = (pictures.GAP + j * (side + pictures.GAP), 2 * pictures.HEADER + pictures.GAP)
        x, y = table["x"].to_numpy(), table["y"].to_numpy()
        drawn = inked_at(pixels, canvas, x, y, origin)
        moved = inked_at(pixels, canvas, x + shift, y, origin)
        record_property(f"panel_{j}_inked", drawn)
        record_property(f"panel_{j}_inked_shifted", moved)
        assert drawn > 0.95 and moved < 0.5, (j, drawn, moved)


@pytest.mark.numeric
def test_compare_same_model_two_layouts(two_runs: tuple[Path, ...], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        record_property: Record) -> None:
    broken = two_runs[0].parent / "broken-000000000000"
    broken.mkdir(exist_ok=True)  # what a model that failed to load leaves behind
    out = tmp_path / "cmp"
    code = cli.main(["compare", *map(str, two_runs), str(broken), "--out", str(out),
                     "--anchor", "monday", "--anchor", "Tokyo", "--anchor", "nosuchtoken"])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == str(out)
    assert f"not compared: {broken}" in captured.err
    result = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in result["runs"]] == ["tiny-bert", "tiny-bert-again"]
    assert result["failed"][0]["run_dir"] == str(broken)
    (pair,) = result["pairs"]
    table = runread.layout(two_runs[0])
    matchable = (~table["category"].astype(str).isin(["special", "byte"])).sum()
    assert pair["shared"] == matchable and pair["share_a"] == 1.0
    # same vectors: identical neighbours in the original space, calibrated to 1; the two maps
    # differ a little
    original, within = pair["original"]
    assert original["observed"] == original["calibrated"] == 1.0 and within["null"] == "category"
    record_property("null_mean_over_expected", original["null_mean"] / (10 / (pair["shared"] - 1)))
    # measured 0.99-1.01 times k / (n - 1) (seed sets 0-4, 1 and 2 threads, AVX2 kernels)
    assert original["null_mean"] == pytest.approx(10 / (pair["shared"] - 1), rel=0.1)
    assert original["p_value"] == pytest.approx(1 / 101, abs=1e-4)
    on_map = pair["map"][0]
    record_property("map_null_mean", on_map["null_mean"])
    record_property("map_calibrated", on_map["calibrated"])
    record_property("map_observed", on_map["observed"])
    record_property("disparity", pair["procrustes_disparity"])
    # measured null 0.070-0.072, calibrated 0.85-0.87, observed 0.86-0.88; disparity of the
    # rotated, scaled, jittered copy 0.0035-0.0038
    assert on_map["null_mean"] < on_map["calibrated"] <= on_map["observed"] < 1.0
    assert 0.0 < pair["procrustes_disparity"] < 0.1
    tokens = pd.read_parquet(out / pair["table"])
    assert len(tokens) == pair["shared"] and (tokens["agreement"] == 1.0).all()
    assert len(pair["stable"]) == 15 and pair["stable"][0]["a"] == pair["stable"][0]["b"]
    assert result["runs"][1]["disparity_to_first"] == pair["procrustes_disparity"]
    # anchors: found (also via case: "Tokyo" -> "tokyo"), or drawn as missing
    nearest = {a["anchor"]: a["nearest"] for a in result["anchors"]}
    assert len(nearest["monday"]["tiny-bert"]) == 10
    assert nearest["Tokyo"]["tiny-bert-again"] and nearest["nosuchtoken"]["tiny-bert"] == []
    md = (out / "compare.md").read_text()
    assert "| tiny-bert | tiny-bert-again | " in md and "broken-000000000000" in md
    assert "## Agreement in the original spaces" in md and "Most stable tokens" in md
    assert "<table>" in (out / "compare.html").read_text()
    assert_grid_draws(out / "grid.png", two_runs, record_property)
    assert sorted(p.name for p in out.glob("anchor_*.png")) == [
        "anchor_1.png", "anchor_2.png", "anchor_3.png"]
    assert not list(out.glob(".*.tmp"))


def test_compare_needs_two_finished_runs(two_runs: tuple[Path, ...], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["compare", str(two_runs[0]), str(tmp_path / "missing-123456789abc")])
    assert code == 2
    err = capsys.readouterr().err
    assert "need at least two finished runs" in err and "missing-123456789abc" in err


def test_plan_from_config_and_duplicate_models(tmp_path: Path, bert_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TOML.format(model=bert_dir, seed=1, out=tmp_path / "runs"))
    assert cli.main(["compare", "--config", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.split()
    assert [Path(p).name.rsplit("-", 1)[0] for p in lines] == [
        "tiny-bert", "tiny-bert-again", "compare"]
    dup = tmp_path / "dup.toml"
    dup.write_text(path.read_text().replace('name = "tiny-bert-again"\n', ""))
    assert cli.main(["compare", "--config", str(dup), "--dry-run"]) == 2
    assert "write the same run directory" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
