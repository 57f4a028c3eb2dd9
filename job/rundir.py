"""The run directory: where a layout lives, how it is named, and how files land in it.

A run directory is keyed by what decides the layout (model, revision, token selection, layout
parameters), so a rerun with the same settings finds the finished layout and reuses it.
Every file is written to a temporary name in the same folder and renamed into place, so a
crash or a requeue never leaves a half-written output behind. One process writes a run
directory at a time: ``claim`` holds an advisory lock (``fcntl.flock`` on ``.vocabmap.lock``
in the folder), which the kernel releases when the holder exits or is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from job.config import Config, ModelConfig, model_name
from job.errors import FileError, file_error

log = logging.getLogger(__name__)

LAYOUT = "layout.parquet"
MANIFEST = "manifest.json"
FACTS = "facts.json"  # what the layout stages found, kept so a rerun can reuse the layout
NEIGHBOURS = "neighbours.parquet"  # each token's nearest neighbours in the model's space
VECTORS = "vectors.npy"  # contextual runs: the mapped vectors (float16), rows as the layout
LOCK = ".vocabmap.lock"  # one writer per run directory; holds who has it (pid, host, since)
LOCK_WAIT_ENV = "VOCABMAP_LOCK_WAIT"  # seconds a run waits for another run's lock
LOCK_WAIT_DEFAULT = 3600.0
_LIBRARIES = ("vocabmap", "numpy", "pandas", "torch", "transformers", "tokenizers",
              "safetensors", "openTSNE", "scikit-learn", "datashader", "holoviews", "bokeh",
              "cupy-cuda12x", "cupy-cuda13x", "cuml-cu12", "cuml-cu13", "fugashi")


class RunDirError(FileError):
    """The run directory cannot be created, written, read or claimed; the message says what
    to do."""


def run_key(model: ModelConfig, config: Config) -> str:
    """A short hash of everything that decides the layout."""
    decided = {"model": model.id, "revision": model.revision,
               "tokens": asdict(config.tokens), "layout": asdict(config.layout)}
    if model.embeddings == "contextual":
        decided["contextual"] = asdict(config.contextual)
    if model.matrix != "input":  # only then: the keys of input runs stay as they were
        decided["matrix"] = model.matrix
    blob = json.dumps(decided, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_label(model: ModelConfig) -> str:
    """A file-name-safe label for a model: its name, or the last part of its id."""
    raw = model.name or model_name(model.id)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw) or "model"


def run_dir(model: ModelConfig, config: Config) -> Path:
    kind = "-contextual" if model.embeddings == "contextual" else ""
    kind += "-output" if model.matrix == "output" else ""
    return Path(config.output.dir) / f"{model_label(model)}{kind}-{run_key(model, config)}"


def folder_label(folder: Path) -> str:
    """The label part of a run directory's name (:func:`run_dir` without its key)."""
    name = Path(folder).name
    return name.rsplit("-", 1)[0] if "-" in name else name


def is_complete(folder: Path) -> bool:
    """A finished run has its layout and its manifest (the manifest is written last)."""
    return (folder / LAYOUT).is_file() and (folder / MANIFEST).is_file()


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the result to ``path`` in one step.

    A full disk or a read-only folder raises ``RunDirError``; the temporary file is removed.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise file_error(err, f"cannot write {path}", kind=RunDirError) from err
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the usual file mode
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise file_error(err, f"cannot write {path}", kind=RunDirError) from err
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
    """Remove temporary files a killed run left behind; returns how many. Call it only while
    holding the folder's lock (``claim``): other runs' temporary files are live."""
    count = 0
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


def lock_wait() -> float:
    """Seconds to wait for another run's lock: ``VOCABMAP_LOCK_WAIT``, else one hour."""
    raw = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not raw:
        return LOCK_WAIT_DEFAULT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise RunDirError(f"{LOCK_WAIT_ENV}={raw!r} is not a number of seconds >= 0; "
                          "set it to e.g. 600, or 0 to refuse at once")
    return seconds


@contextlib.contextmanager
def claim(folder: Path, wait: float | None = None) -> Iterator[Path]:
    """Be the one writer of ``folder`` for the block.

    Creates the folder (and missing parents) when needed and checks that files can be
    written in it, before anything costly; waits up to ``wait`` seconds (default:
    ``lock_wait()``) for another run's lock, logging who holds it; then removes temporary
    files that killed runs left. If the block fails and the folder holds nothing but the
    lock, the folder and the parents this call created are removed again.
    """
    folder = Path(folder)
    wait = lock_wait() if wait is None else wait
    created: list[Path] = []
    try:
        created += _make_dirs(folder)
        _probe(folder)
        fd = _lock(folder, wait, created)
    except BaseException:
        _remove_empty_dirs(created)  # not holding the lock: the holder's lock file stays
        raise
    try:
        if removed := clean_stale_temp(folder):
            log.info("removed %d temporary file(s) left by an interrupted run in %s",
                     removed, folder)
        yield folder
    except BaseException:
        _remove_if_only_lock(folder)  # still holding the lock
        _remove_empty_dirs(created)
        raise
    finally:
        os.close(fd)  # releases the lock


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones this call created."""
    missing = []
    parent = folder
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"cannot create the run directory {folder}: {parent} is a file, not "
                          "a folder; choose --out elsewhere")
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
            created.append(path)
        except FileExistsError as err:
            if not path.is_dir():
                raise RunDirError(f"cannot create the run directory {folder}: {path} is a file, "
                                  "not a folder; choose --out elsewhere") from err
        except OSError as err:
            raise file_error(err, f"cannot create the run directory {folder}",
                             "choose --out elsewhere (a folder you can write)",
                             RunDirError) from err
    return created


def _probe(folder: Path) -> None:
    """Create and delete a file in ``folder``: fail now, not after the layout, if we cannot."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vocabmap-probe.", suffix=".tmp", dir=folder)
    except FileNotFoundError:
        return  # a failed lock holder just removed the folder: _lock makes it again
    except OSError as err:
        raise file_error(err, f"cannot write in the run directory {folder}",
                         "choose --out elsewhere or make it writable", RunDirError) from err
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)  # a lock holder may have cleaned it already


def _lock(folder: Path, wait: float, created: list[Path]) -> int:
    """Open ``folder``'s lock file and take its exclusive lock; returns the descriptor."""
    path = folder / LOCK
    deadline = time.monotonic() + wait
    announced = ""
    while True:
        created += _make_dirs(folder)  # a failed holder may have removed the folder
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise file_error(err, f"cannot lock the run directory {folder}",
                             "choose --out elsewhere or make it writable", RunDirError) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            holder = _holder(path)
            if time.monotonic() >= deadline:
                raise RunDirError(f"the run directory {folder} is in use by {holder} (waited "
                                  f"{wait:g} s); wait for that job to end, or set "
                                  f"{LOCK_WAIT_ENV} to wait longer") from err
            if holder != announced:
                log.info("waiting for the run directory lock held by %s (up to %g s; %s "
                         "sets the limit)", holder, wait, LOCK_WAIT_ENV)
                announced = holder
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))
            continue
        if _same_file(fd, path):
            try:
                _write_holder(fd)
            except OSError as err:
                os.close(fd)
                raise file_error(err, f"cannot write {path}", kind=RunDirError) from err
            return fd
        os.close(fd)  # the lock file was removed while we waited: lock the new one


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _write_holder(fd: int) -> None:
    since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    text = json.dumps({"pid": os.getpid(), "host": platform.node(), "since": since})
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode() + b"\n", 0)


def _holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it in the lock file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _remove_if_only_lock(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing but its lock file (call while holding the lock):
    a run that failed before its first finished file leaves no empty run directory."""
    with contextlib.suppress(OSError):
        if not set(os.listdir(folder)) - {LOCK}:
            (folder / LOCK).unlink(missing_ok=True)
            folder.rmdir()


def _remove_empty_dirs(created: list[Path]) -> None:
    """Remove the folders this run created, deepest first, where they are empty."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


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


def environment() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "host": platform.node(),
            "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
            "slurm_array_task": os.environ.get("SLURM_ARRAY_TASK_ID", ""),
            "vocabmap_git": git_revision(), "libraries": library_versions()}
