"""Shared fixtures: tiny models built on the fly, a fast layout config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import tiny_bert


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests, with the reason, where no CUDA device is present."""
    from job.reduce import cuda_available

    ok, why = cuda_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA device: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random WordPiece BERT saved with save_pretrained (about 150 tokens)."""
    return tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


FAST_TOML = """
[model]
id = "{model}"

[layout]
perplexity = 5
early_exaggeration_iter = 50
n_iter = 100

[quality]
sample = 100

[render]
width = 400
height = 400
zoom_width = 400
zoom_height = 400
auto_zooms = 2
zooms = [{{ name = "days", anchor = "monday", neighbours = 12 }}]

[output]
dir = "{out}"
"""


@pytest.fixture
def fast_config(tmp_path: Path, bert_dir: Path) -> Path:
    """A config that maps the tiny BERT in a second or two."""
    path = tmp_path / "fast.toml"
    path.write_text(FAST_TOML.format(model=bert_dir, out=tmp_path / "runs"), encoding="utf-8")
    return path
