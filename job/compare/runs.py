"""Run directories as the comparison sees them: finished runs, failed runs, token keys, vectors.

A run directory is finished when it holds ``layout.parquet`` and ``manifest.json`` (the
pipeline writes the manifest last). Anything else — an empty folder left by a model that
failed to load, a folder that was never made — is a failed run, named with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from job import rundir, runread
from job.config import Config, ModelConfig
from job.errors import VocabmapError
from job.knn import l2_normalise
from job.runread import Manifest

log = logging.getLogger(__name__)

# Categories left out of the shared-token match: specials ([CLS], <|endoftext|>) mean
# different things per model, and byte pieces are not text.
SKIPPED_CATEGORIES = ("special", "byte")


class CompareError(VocabmapError, ValueError):
    """The comparison cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Vectors:
    """Original embedding rows of a run (row-normalised for the cosine metric)."""

    matrix: np.ndarray  # float32; every layout row when ``full``, else the kept keys' rows
    rows: pd.Series  # key -> row of ``matrix`` (a key's first layout row)
    full: bool = False  # rows of ``matrix`` are the layout's rows, in order

    def take(self, keys: list[str]) -> np.ndarray:
        return self.matrix[self.rows.loc[keys].to_numpy()]


@dataclass
class Run:
    """One finished run directory."""

    folder: Path
    manifest: Manifest
    table: pd.DataFrame  # the layout, plus ``key`` for shared-token matching
    vectors: Vectors | None = None
    vectors_error: str = ""

    @property
    def label(self) -> str:
        return rundir.folder_label(self.folder)

    @property
    def family(self) -> str:
        return self.manifest.model.family

    @property
    def metric(self) -> str:
        return self.manifest.metric


@dataclass(frozen=True)
class Failed:
    """A run directory that holds no finished layout."""

    folder: Path
    reason: str


def token_keys(table: pd.DataFrame) -> pd.Series:
    """The matching key of each row: display text plus word-start flag ("▁the" = "Ġthe" =
    "the" at a word start; "##ing" = "ing" inside a word), or None for specials and bytes.

    Case is kept: an uncased vocabulary (bert-base-uncased) then shares only its lower-case
    forms with cased ones, instead of one arbitrary pick among "The"/"the"/"THE".
    """
    keep = ~table["category"].astype(str).isin(SKIPPED_CATEGORIES).to_numpy()
    starts = table["word_start"].to_numpy(dtype=bool)
    keys = [("▁" if start else "") + str(text) if ok else None
            for text, start, ok in zip(table["display"], starts, keep, strict=True)]
    return pd.Series(keys, index=table.index, dtype=object)


def first_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each key's first row of ``table`` (rows without a key left out), in table order."""
    return table.dropna(subset=["key"]).drop_duplicates("key")


def by_key(table: pd.DataFrame, keys: np.ndarray | None = None) -> pd.DataFrame:
    """Each key's first row of ``table``, indexed by key; ``keys`` (one per row of
    ``table``) stands in for its own ``key`` column."""
    if keys is not None:
        table = table.assign(key=keys)
    return first_rows(table).set_index("key")


def error_from_log(path: Path) -> str:
    """The last ``vocabmap: error:`` (or Python exception) line of a task's log, if any."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("vocabmap: error:") or re.match(r"^\w+(Error|Exception): ", line):
            return line.strip()
    return ""


def load(folder: Path, log_file: Path | None = None) -> Run | Failed:
    """A finished :class:`Run`, or :class:`Failed` saying why not."""
    folder = Path(folder)
    hint = error_from_log(log_file) if log_file else ""
    if not folder.is_dir():
        return Failed(folder, hint or "no run directory (the model's job did not start it)")
    if not rundir.is_complete(folder):
        return Failed(folder, hint or "did not finish (no manifest.json); see the job's log")
    table = runread.layout(folder)
    table["key"] = token_keys(table)
    return Run(folder, Manifest.read(folder), table)


def planned(config: Config) -> list[Path]:
    """The run directories a config's models write; two models may not share one."""
    folders = [rundir.run_dir(m, config) for m in config.models]
    seen: dict[Path, int] = {}
    for i, folder in enumerate(folders):
        if folder in seen:
            raise CompareError(f"models[{seen[folder]}] and models[{i}] write the same run "
                               f"directory {folder}; remove the duplicate or give a different "
                               "revision")
        seen[folder] = i
    return folders


def output_dir(folders: list[Path]) -> Path:
    """``compare-<12 hex>`` next to the runs, keyed by the set of run directory names."""
    names = sorted(Path(f).name for f in folders)
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return Path(folders[0]).parent / f"compare-{key}"


def load_vectors(run: Run, keys: set[str], full: bool = False) -> None:
    """The original embedding rows of ``keys`` (row-normalised for the cosine metric), or,
    with ``full``, of every layout row (what an aligned layout of the run needs).

    The matrix is read again from the model folder recorded in the manifest (the
    safetensors path reads only the embedding tensor); only the needed rows are kept.
    """
    from job import source

    if run.manifest.model.contextual:
        _load_stored_vectors(run, keys, full)
        return
    path, matrix = run.manifest.model.path, run.manifest.model.matrix
    try:
        emb = source.load(ModelConfig(id=path, matrix=matrix), both=False)
    except (VocabmapError, OSError) as err:  # e.g. a .bin model and no torch
        run.vectors_error = f"could not re-read {path}: {err}"
        log.warning("%s: %s", run.label, run.vectors_error)
        return
    expected = run.manifest.model.vocab_size
    if emb.matrix.shape[0] != expected:
        run.vectors_error = (f"{path} now has {emb.matrix.shape[0]} rows, the run had "
                             f"{expected}; the model files changed since the run")
        log.warning("%s: %s", run.label, run.vectors_error)
        return
    _keep(run, keys, lambda rows: emb.matrix[rows["token_id"].to_numpy()], full)


def _load_stored_vectors(run: Run, keys: set[str], full: bool) -> None:
    """A contextual run's vectors, stored beside its layout (rows as in the layout)."""
    path = run.folder / rundir.VECTORS
    if not path.is_file():
        run.vectors_error = f"{path} is missing; rerun the contextual model to store it"
        return
    stored = np.load(path, mmap_mode="r")
    if stored.shape[0] != len(run.table):
        run.vectors_error = f"{path} has {stored.shape[0]} rows, the layout {len(run.table)}"
        return
    _keep(run, keys, lambda rows: stored[rows.index.to_numpy()], full)


def _keep(run: Run, keys: set[str], take: Callable[[pd.DataFrame], np.ndarray],
          full: bool = False) -> None:
    """Store in ``run.vectors`` the rows ``take`` gives for ``keys`` (normalised for cosine),
    or for every layout row with ``full``.

    ``take`` receives the layout rows to keep, indexed by their position in the layout.
    """
    table = run.table.reset_index(drop=True)
    first = first_rows(table)
    if full:
        picked = table
        rows = pd.Series(first.index.to_numpy(), index=first["key"].to_numpy())
    else:
        picked = first[first["key"].isin(keys)]
        rows = pd.Series(np.arange(len(picked)), index=picked["key"].to_numpy())
    matrix = np.ascontiguousarray(take(picked), dtype=np.float32)
    if run.metric == "cosine":
        matrix = l2_normalise(matrix)
    run.vectors = Vectors(matrix, rows, full)


def same_model(runs: list[Run]) -> bool:
    """True when every run maps the same model files (e.g. its input and contextual vectors,
    or its input and output matrices)."""
    ids = {(r.manifest.model.path, r.manifest.model.revision) for r in runs}
    return len(ids) == 1 and None not in next(iter(ids))


def key_by_id(runs: list[Run]) -> None:
    """Match tokens by exact id: right when all runs share one tokenizer."""
    for run in runs:
        special = run.table["category"].astype(str).isin(SKIPPED_CATEGORIES).to_numpy()
        run.table["key"] = [None if s else f"#{i}"
                            for i, s in zip(run.table["token_id"], special, strict=True)]
