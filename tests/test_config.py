"""Config loading: defaults, overrides, and errors that name the bad key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from job import config
from job.config import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_config_file_loads() -> None:
    cfg = config.load(Path(__file__).parent.parent / "configs" / "default.toml")
    assert cfg.model.id == config.EMBEDDED_DEFAULT
    assert cfg.layout.metric == "cosine" and cfg.layout.perplexity == 30.0
    assert [z.anchor for z in cfg.render.zooms] == ["1990", "japan", "champion"]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""))
    assert cfg == config.Config()
    assert cfg.model.id == config.EMBEDDED_DEFAULT


def test_integer_accepted_for_float_and_models_list(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[[models]]\nid = "a/b"\n[[models]]\nid = "c"\n'
                                      "[layout]\nperplexity = 15\n"))
    assert [m.id for m in cfg.models] == ["a/b", "c"]
    assert cfg.layout.perplexity == 15.0


@pytest.mark.parametrize(("text", "needle"), [
    ("[layout]\nperplexty = 30\n", "unknown key 'layout.perplexty'; allowed keys in [layout]: "
                                   "backend, metric, perplexity"),
    ("[layuot]\n", "unknown key 'layuot'; allowed keys: models, tokens, layout"),
    ('[layout]\nmetric = "manhattan"\n', "layout.metric = 'manhattan' is not allowed; "
                                         "choose one of: 'cosine', 'euclidean'"),
    ('[layout]\nbackend = "gpu"\n', "choose one of: 'auto', 'opentsne', 'cuml', 'sklearn'"),
    ("[layout]\nperplexity = 0\n", "layout.perplexity = 0 is not allowed; must be between"),
    ('[layout]\nlearning_rate = "fast"\n', "layout.learning_rate = 'fast' is not allowed"),
    ('[tokens]\nn = "ten"\n', "tokens.n = 'ten' is not allowed; expected int"),
    ("[render]\nwidth = true\n", "render.width = True is not allowed; expected int"),
    ('[render]\nzooms = [{ name = "z" }]\n', "needs exactly one of box or anchor"),
    ("[render]\nzooms = [{ name = 'z', box = [1, 0, 0, 1] }]\n", "render.zooms[0].box"),
    ('[model]\nid = "a"\n[[models]]\nid = "b"\n', "either [model] or [[models]]"),
    ("models = []\n", "models is empty"),
    ("[layout\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, text))
    assert needle in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file 'nope.toml' not found"):
        config.load("nope.toml")


def test_overrides(tmp_path: Path) -> None:
    cfg = config.with_overrides(config.Config(), model="some/model", out=str(tmp_path))
    assert cfg.model.id == "some/model" and cfg.output.dir == str(tmp_path)


def test_cli_bad_config_fails_before_work(tmp_path: Path) -> None:
    """One line on stderr naming the key, exit 2, and no output folder created."""
    out = tmp_path / "runs"
    path = write(tmp_path, f'[layout]\nmetrc = "cosine"\n[output]\ndir = "{out}"\n')
    proc = subprocess.run([sys.executable, "-m", "job", "run", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "vocabmap: error: unknown key 'layout.metrc'")
    assert proc.stdout == ""
    assert not out.exists()
