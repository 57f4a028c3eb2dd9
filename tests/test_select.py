"""Token subsets on a real token table, and one whole job on a GPT-2 style model with a
selection recorded in its manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from job import runread, select, source, tokens
from job.config import ConfigError, ModelConfig, TokensConfig
from job.runread import Manifest
from tests.conftest import FAST_TOML

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table(bert_dir: Path) -> pd.DataFrame:
    emb = source.load(ModelConfig(id=str(bert_dir)))
    return tokens.build_table(emb.tokenizer, emb.matrix.shape[0])


def chosen(table: pd.DataFrame, **kwargs: object) -> tuple[pd.DataFrame, dict]:
    rows, record = select.select(table, TokensConfig(**kwargs))  # type: ignore[arg-type]
    return table.iloc[rows], record


def test_all_is_the_default(table: pd.DataFrame) -> None:
    rows, record = chosen(table)
    assert len(rows) == len(table) == record["selected"] == record["vocabulary"]
    assert record["rule"] == "all" and record["id_range"] == [0, len(table) - 1]


def test_first_and_last(table: pd.DataFrame) -> None:
    first, record = chosen(table, select="first", n=20)
    assert first["token_id"].tolist() == list(range(20)) and record["n"] == 20
    last, _ = chosen(table, select="last", n=20)
    assert last["token_id"].tolist() == list(range(len(table) - 20, len(table)))
    everything, _ = chosen(table, select="last", n=10**6)
    assert len(everything) == len(table)


def test_ids_are_token_ids_sorted_and_unique(table: pd.DataFrame) -> None:
    rows, record = chosen(table, select="ids", ids=(40, 7, 7, 12, 3, 99, 5))
    assert rows["token_id"].tolist() == [3, 5, 7, 12, 40, 99] and record["ids"] == 7
    shifted = table.iloc[10:]  # a table that does not start at id 0 (e.g. filtered rows)
    rows, _ = chosen(shifted, select="ids", ids=(10, 11, 12, 13, 20))
    assert rows["token_id"].tolist() == [10, 11, 12, 13, 20]
    with pytest.raises(ConfigError, match=r"tokens.ids \[5\] are not in this vocabulary"):
        chosen(shifted, select="ids", ids=(5, 10, 11, 12, 13))


def test_regex_over_display_text(table: pd.DataFrame) -> None:
    rows, record = chosen(table, select="regex", regex=r"^(mon|tues|fri)day$|ing$")
    assert sorted(rows["display"]) == ["friday", "ing", "king", "monday", "running", "tuesday",
                                       "walking"]
    assert record["regex"] == r"^(mon|tues|fri)day$|ing$" and record["selected"] == 7


def test_category_and_script_filters(table: pd.DataFrame) -> None:
    words, record = chosen(table, categories=("continuation",))
    assert set(words["category"]) == {"continuation"}
    assert words["token"].str.startswith("##").all() and record["categories"] == ["continuation"]
    digits, _ = chosen(table, select="first", n=80, scripts=("digit",))
    assert set(digits["script"]) == {"digit"} and digits["token_id"].max() < 80
    assert "1990" in set(digits["token"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"select": "ids"}, 'tokens.select = "ids" needs tokens.ids'),
    ({"select": "regex"}, 'tokens.select = "regex" needs tokens.regex'),
    ({"select": "regex", "regex": "(unclosed"}, "is not a valid regex"),
    ({"categories": ("verbs",)}, r"tokens.categories has unknown values \['verbs'\]; allowed: "
                                 r"byte, continuation, number"),
    ({"scripts": ("klingon",)}, r"tokens.scripts has unknown values \['klingon'\]"),
    ({"select": "first", "n": 3}, "keeps 3 tokens; t-SNE needs at least 5"),
    ({"scripts": ("hangul",)}, "keeps 0 tokens"),
])
def test_selection_errors(table: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        chosen(table, **kwargs)


def test_gpt2_job_end_to_end_with_a_selection(gpt2_dir: Path, tmp_path: Path) -> None:
    """``python -m job run`` on a byte-level BPE model: padding rows dropped, readable labels,
    only the selected categories laid out, the selection in the manifest."""
    config = tmp_path / "gpt2.toml"
    text = FAST_TOML.format(model=gpt2_dir, out=tmp_path / "runs")
    text = text.replace("[layout]", '[tokens]\ncategories = ["word", "number"]\n\n[layout]')
    text = text.replace("[render]", "[render]\nhtml = false\nauto_zooms = 0", 1)
    text = text.replace("auto_zooms = 2\n", "")
    config.write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "job", "run", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = Path(proc.stdout.strip().splitlines()[-1])
    manifest = Manifest.read(run)
    layout = runread.layout(run)
    assert manifest.model.family == "bytelevel"
    assert (manifest.value("model", "read_by"), manifest.value("model", "tensor")) == (
        "safetensors", "transformer.wte.weight")
    assert manifest.model.vocab_size + manifest.value("model", "padding_rows_dropped") == 640
    assert manifest.value("selection", "categories") == ["word", "number"]
    assert (manifest.value("selection", "selected") == len(layout)
            < manifest.value("selection", "vocabulary") == manifest.model.vocab_size)
    assert set(layout["category"].astype(str)) == {"word", "number"}
    assert {"world", "monday"} <= set(layout["display"])
    assert not layout["display"].str.contains("Ġ").any()
    assert layout[["x", "y"]].notna().all().all()
    assert (run / "overview.png").is_file()
