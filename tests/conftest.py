"""Shared fixtures: tiny models built on the fly, a fast layout config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import numeric
from tests.builders import tiny_bert


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed-set", type=int, default=0, metavar="N",
                     help="draw the numeric tests' seeded inputs (models, data, layouts) from "
                     "seed set N instead of 0, as `make test-any-machine` does")


def pytest_configure(config: pytest.Config) -> None:
    numeric.SEED_SET = config.getoption("--seed-set")


def pytest_report_header(config: pytest.Config) -> str | None:
    if numeric.SEED_SET:
        return f"numeric tests: seed set {numeric.SEED_SET}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests where no CUDA device is present, and ``cuml`` tests where cuML is not
    installed, each with the reason."""
    import importlib.util

    from job.gpu import cuda_available

    ok, why = cuda_available()
    no_gpu = pytest.mark.skip(reason=f"needs a CUDA device: {why}")
    no_cuml = pytest.mark.skip(reason="cuML is not installed in this environment; `make test` "
                               "runs these in the cuML one (scripts/cuml_env.py)")
    has_cuml = importlib.util.find_spec("cuml") is not None
    for item in items:
        if "gpu" in item.keywords and not ok:
            item.add_marker(no_gpu)
        if "cuml" in item.keywords and not has_cuml:
            item.add_marker(no_cuml)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random WordPiece BERT saved with save_pretrained (about 150 tokens)."""
    return tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", seed=numeric.seed())


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2: byte-level BPE, embedding matrix padded to a multiple of 64 rows."""
    from tests.builders import tiny_gpt2

    return tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2", seed=numeric.seed())


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama: SentencePiece-style byte-fallback BPE, bf16 sharded safetensors."""
    from tests.builders import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", seed=numeric.seed())


@pytest.fixture(scope="session", params=["unidic_lite", "ipadic"])
def japanese_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Japanese BERT (MeCab + WordPiece), saved as cl-tohoku v2/v3 (unidic_lite) or
    as bert-base-japanese-whole-word-masking (ipadic)."""
    from tests.builders import tiny_japanese_bert

    folder = tmp_path_factory.mktemp("models") / f"tiny-ja-{request.param}"
    return tiny_japanese_bert(folder, request.param)


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
