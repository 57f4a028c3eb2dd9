"""The run directory: where a layout lives, how it is named, and how files land in it.

A run directory is keyed by what decides the layout (model, revision, token selection, layout
parameters), so a rerun with the same settings finds the finished layout and reuses it.
Every file is written to a temporary name in the same folder and renamed into place, so a
crash or a requeue never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from job.config import Config, ModelConfig

log = logging.getLogger(__name__)

LAYOUT = "layout.parquet"
MANIFEST = "manifest.json"
FACTS = "facts.json"  # what the layout stages found, kept so a rerun can reuse the layout
VECTORS = "vectors.npy"  # contextual runs: the mapped vectors (float16), rows as the layout
_LIBRARIES = ("vocabmap", "numpy", "pandas", "torch", "transformers", "tokenizers",
              "safetensors", "openTSNE", "scikit-learn", "datashader", "holoviews", "bokeh",
              "cupy-cuda12x", "cupy-cuda13x", "cuml-cu12", "cuml-cu13", "fugashi")


def run_key(model: ModelConfig, config: Config) -> str:
    """A short hash of everything that decides the layout."""
    decided = {"model": model.id, "revision": model.revision,
               "tokens": asdict(config.tokens), "layout": asdict(config.layout)}
    if model.embeddings == "contextual":
        decided["contextual"] = asdict(config.contextual)
    blob = json.dumps(decided, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_label(model: ModelConfig) -> str:
    """A file-name-safe label for a model: its name, or the last part of its id."""
    raw = model.name or model.id.removeprefix("embedded:").rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw) or "model"


def run_dir(model: ModelConfig, config: Config) -> Path:
    kind = "-contextual" if model.embeddings == "contextual" else ""
    return Path(config.output.dir) / f"{model_label(model)}{kind}-{run_key(model, config)}"


def is_complete(folder: Path) -> bool:
    """A finished run has its layout and its manifest (the manifest is written last)."""
    return (folder / LAYOUT).is_file() and (folder / MANIFEST).is_file()


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the result to ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet(path: Path, frame: Any) -> Path:
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def clean_stale_temp(folder: Path) -> int:
    """Remove temporary files a killed run left behind; returns how many."""
    count = 0
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


def library_versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def git_revision() -> str:
    """The project's git commit (with ``-dirty`` for local changes), or "" outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "job"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("-dirty" if dirty else "")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "host": platform.node(),
            "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
            "slurm_array_task": os.environ.get("SLURM_ARRAY_TASK_ID", ""),
            "vocabmap_git": git_revision(), "libraries": library_versions()}


class Stages:
    """Times each stage of a run, logs one line per stage, and keeps the figures."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage %s ...", name)
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.seconds[name] = round(self.seconds.get(name, 0.0) + took, 3)
        log.info("stage %s: %.1f s (peak RSS %.0f MiB)", name, took, peak_rss_mib())

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)
