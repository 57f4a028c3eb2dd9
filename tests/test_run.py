"""The whole job on a tiny random BERT the test builds: outputs, reuse, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from job import cli, runread
from job import config as config_mod
from job.render import raster
from job.render.box import Box
from job.render.zooms import Region
from job.runread import Manifest
from tests.pixels import grey, inked_at


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True, text=True,
                          timeout=600)


def assert_points_drawn(folder: Path) -> None:
    """Every picture shows the layout's points where the layout puts them, and not a
    quarter of the picture to the right: the overview all of them, each zoom those in its
    box. Measured on this tiny model and on the embedded default: 0.993-1.0 of the points
    inked, 0.0-0.09 when shifted."""
    manifest = Manifest.read(folder)
    cfg = config_mod.from_dict({"render": manifest.render}).render
    table = runread.layout(folder)
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    canvas = raster.full_canvas(table, cfg.width, cfg.height)
    shift = canvas.box.size[0] / 4
    overview = grey(folder / "overview.png")
    assert inked_at(overview, canvas, x, y) > 0.95
    assert inked_at(overview, canvas, x + shift, y) < 0.5
    band = raster.title_band(cfg.font_size)
    for zoom in manifest.value("rendered", "zooms"):
        box = map(float, zoom["box"])  # an automatic zoom's box is float32, stored as text
        region = Region(zoom["name"], Box(*box), how=zoom["how"])
        canvas = raster.zoom_canvas(region, cfg.zoom_width, cfg.zoom_height - band)
        inside = canvas.box.contains(x, y)
        xs, ys = x[inside], y[inside]
        shift = canvas.box.size[0] / 4
        pixels = grey(folder / zoom["file"])
        assert inked_at(pixels, canvas, xs, ys, (0, band)) > 0.95, zoom["name"]
        assert inked_at(pixels, canvas, xs + shift, ys, (0, band)) < 0.5, zoom["name"]


@pytest.fixture
def finished_run(fast_config: Path) -> Path:
    proc = run_cli("run", str(fast_config))
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_run_writes_a_complete_run_directory(finished_run: Path, bert_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    table = runread.layout(finished_run)
    assert len(table) == len(tokenizer)  # one row per vocabulary entry
    assert list(table.columns[:5]) == ["token_id", "token", "display", "word_start", "category"]
    assert table["token_id"].tolist() == list(range(len(tokenizer)))
    assert table["token"].tolist() == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert np.isfinite(table[["x", "y"]].to_numpy()).all()
    by_token = table.set_index("token")
    assert by_token.loc["##ing", "display"] == "ing"
    assert by_token.loc["##ing", "category"] == "continuation"
    assert by_token.loc["[CLS]", "category"] == "special"
    assert by_token.loc["1990", "category"] == "number"
    assert by_token.loc["!", "category"] == "punctuation"
    assert by_token.loc["king", "category"] == "word"

    manifest = Manifest.read(finished_run)
    assert manifest.value("model", "vocab_size") == len(tokenizer)
    assert manifest.value("model", "dims") == 32
    assert manifest.value("model", "read_by") == "safetensors"
    assert manifest.value("backend", "name") == "opentsne"
    assert manifest.value("backend", "effective_params", "initialization").startswith("pca")
    assert manifest.value("config", "layout", "perplexity") == 5.0
    assert 0.0 <= manifest.value("quality", "knn_preservation") <= 1.0
    assert {"load", "tokens", "knn", "layout", "quality", "render"} <= set(
        manifest.value("seconds"))
    assert manifest.value("peak_rss_mib") > 0
    assert "transformers" in manifest.value("environment", "libraries")

    zooms = sorted(p.name for p in finished_run.glob("zoom_*.png"))
    # 1 anchor, the most under-trained tokens, 2 automatic
    assert "zoom_days.png" in zooms and "zoom_undertrained.png" in zooms and len(zooms) == 4
    days = next(z for z in manifest.value("rendered", "zooms") if z["name"] == "days")
    assert "monday" in days["examples"] and days["labels"] >= 5
    assert_points_drawn(finished_run)
    assert not list(finished_run.glob(".*.tmp"))


def test_rerun_reuses_the_layout(finished_run: Path, fast_config: Path) -> None:
    before = (finished_run / "layout.parquet").stat().st_mtime_ns
    stale = finished_run / ".overview.png.abc.tmp"
    stale.write_bytes(b"half-written")
    proc = run_cli("run", str(fast_config))
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip().splitlines()[-1]) == finished_run
    assert "reusing the finished layout" in proc.stderr
    assert (finished_run / "layout.parquet").stat().st_mtime_ns == before
    assert not stale.exists()
    manifest = Manifest.read(finished_run)
    assert manifest.value("layout_reused") is True
    assert "layout" not in manifest.value("seconds") and "render" in manifest.value("seconds")
    assert manifest.value("layout_seconds", "layout") > 0  # what the reused layout cost


def test_stage_lines_and_last_line(fast_config: Path) -> None:
    proc = run_cli("run", str(fast_config), "--out", str(fast_config.parent / "other"))
    assert proc.returncode == 0, proc.stderr
    for stage in ("load", "tokens", "select", "knn", "layout", "quality", "render"):
        assert proc.stderr.count(f"stage {stage}: ") == 1, stage  # each stage said once
    last = Path(proc.stdout.strip().splitlines()[-1])
    assert last.parent == fast_config.parent / "other" and (last / "manifest.json").is_file()


def test_missing_model_folder_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  fast_config: Path) -> None:
    code = cli.main(["run", str(fast_config), "--model", str(tmp_path / "nope"),
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("vocabmap: error: model folder") and "does not exist" in err[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_outputs_readable_by_the_group(tmp_path: Path) -> None:
    """Atomic writes keep the umask's file mode, so collaborators on a cluster can read them."""
    import os

    from job.rundir import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_one_failing_model_does_not_stop_the_others(fast_config: Path, tmp_path: Path) -> None:
    text = fast_config.read_text().replace("[model]", "[[models]]")
    text = text.replace("[layout]", f'[[models]]\nid = "{tmp_path / "missing"}"\n\n[layout]', 1)
    config = tmp_path / "two.toml"
    config.write_text(text, encoding="utf-8")
    proc = run_cli("run", str(config))
    assert proc.returncode == 2
    assert len(proc.stdout.strip().splitlines()) == 1  # the model that worked
    assert (Path(proc.stdout.strip()) / "manifest.json").is_file()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vocabmap: error: model 1 (") and "does not exist" in last
