"""A finished run directory read back: its manifest and facts as typed fields, its layout
and its neighbours.

The one place that knows the keys of ``manifest.json`` and ``facts.json``. A key that is
missing or renamed fails with the file's path and the key's name, instead of a silent
default; so does a run directory without its layout or neighbours file.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from job import rundir, undertrained
from job.errors import VocabmapError, file_error


class NeighbourError(VocabmapError, LookupError):
    """A token that the run does not hold, or a run directory without neighbours."""


@dataclass(frozen=True)
class ModelFacts:
    """The model a run mapped."""

    id: str
    path: str  # the folder its files were read from
    revision: str | None
    label: str
    family: str
    contextual: bool  # contextual vectors (else the input embeddings)
    vocab_size: int
    matrix: str = "input"  # "input" or "output" (the unembedding)
    tied: bool | None = None  # the output matrix is the input one; None: not recorded

    @property
    def title(self) -> str:
        """The model as the pictures' titles name it: the label, and which matrix when the
        map shows the output matrix."""
        return map_title(self.label, self.matrix)


def map_title(label: str, matrix: str) -> str:
    """``label``, followed by "· output matrix" for a map of the unembedding."""
    return f"{label} · output matrix" if matrix == "output" else label


@dataclass(frozen=True)
class Record:
    """A JSON table of one run directory (``NAME`` in ``folder``), read by its keys."""

    NAME: ClassVar[str]
    folder: Path
    data: dict[str, Any]

    @classmethod
    def read(cls, folder: Path) -> Self:
        """The file of ``folder``; a missing or unreadable one is a ``RunDirError``."""
        path = Path(folder) / cls.NAME
        try:
            data = rundir.read_json(path)
        except OSError as err:
            raise file_error(err, f"cannot read {path}", "rerun the model to write it again",
                             rundir.RunDirError) from err
        except ValueError as err:
            raise rundir.RunDirError(f"cannot read {path}: {err}; rerun the model to "
                                     "write it again") from err
        if not isinstance(data, dict):
            raise rundir.RunDirError(f"{path} is not a {cls.NAME} (not a JSON object); rerun "
                                     "the model to write it again")
        return cls(Path(folder), data)

    @classmethod
    def read_if_any(cls, folder: Path) -> Self | None:
        """The file of ``folder``, or None where there is none that can be read."""
        try:
            return cls.read(folder)
        except rundir.RunDirError:
            return None

    def value(self, *keys: str) -> Any:
        """The value under ``keys`` (outer first); a missing key names the file."""
        node: Any = self.data
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                where = ".".join(keys[:depth + 1])
                raise rundir.RunDirError(f"{self.folder / self.NAME} has no '{where}'; "
                                         "it was written by another vocabmap version: rerun "
                                         "the model")
            node = node[key]
        return node

    @functools.cached_property
    def model(self) -> ModelFacts:
        """What the file says of the model (its ``model`` table)."""
        return ModelFacts(
            id=str(self.value("model", "id")), path=str(self.value("model", "path")),
            revision=self.value("model", "revision"), label=str(self.value("model", "label")),
            family=str(self.value("model", "family")),
            contextual=self.value("model", "embeddings") == "contextual",
            vocab_size=int(self.value("model", "vocab_size")),
            # runs made before output maps existed mapped the input matrix and did not
            # record whether it is tied
            matrix=str(self.data["model"].get("matrix", "input")),
            tied=self.data["model"].get("tied"))


@dataclass(frozen=True)
class Facts(Record):
    """``facts.json``: what the layout's stages found, kept beside the layout for reuse."""

    NAME: ClassVar[str] = rundir.FACTS


@dataclass(frozen=True)
class Manifest(Record):
    """``manifest.json`` of one run directory: the facts and what this run drew."""

    NAME: ClassVar[str] = rundir.MANIFEST

    @property
    def layout(self) -> dict[str, Any]:
        """The layout settings the run used (the config's ``layout`` table)."""
        return dict(self.value("config", "layout"))

    @property
    def render(self) -> dict[str, Any]:
        """The render settings the pictures show (the config's ``render`` table)."""
        return dict(self.value("config", "render"))

    @property
    def metric(self) -> str:
        return str(self.value("config", "layout", "metric"))

    @property
    def knn(self) -> str:
        """The run's ``layout.knn``: which neighbour search its vectors take."""
        return str(self.value("config", "layout", "knn"))

    @property
    def anchors(self) -> list[str]:
        """The anchors of the run's zooms, in order."""
        return [z["anchor"] for z in self.value("config", "render", "zooms") if z.get("anchor")]

    @property
    def knn_preservation(self) -> float | None:
        return self.value("quality", "knn_preservation")

    @property
    def rendered(self) -> dict[str, Any] | None:
        """What the pictures are (files, fonts), or None before any were recorded."""
        return self.data.get("rendered")

    @property
    def verify_settings(self) -> dict[str, Any]:
        """The run's ``[verify]`` settings; {} for a run from before there were any."""
        return dict((self.data.get("config") or {}).get("verify") or {})

    @property
    def verified(self) -> dict[str, Any] | None:
        """What `vocabmap verify` found (job/verify.py), or None before it ran."""
        return self.data.get("verified")

    @property
    def render_state(self) -> dict[str, Any]:
        """What the pictures were drawn from; {} before any were recorded."""
        return dict(self.data.get("render_state") or {})

    def rerendered(self, part: dict[str, Any], render: dict[str, Any]) -> dict[str, Any]:
        """The manifest's data once its pictures were drawn again: ``part`` (``rendered``
        and ``render_state``) and the ``render`` settings they show."""
        data = self.data | part
        data["config"] = dict(data.get("config") or {}) | {"render": render}
        return data


def layout(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The run directory's ``layout.parquet`` (only ``columns`` when given)."""
    path = Path(folder) / rundir.LAYOUT
    if not path.is_file():
        raise rundir.RunDirError(f"{folder} has no {rundir.LAYOUT}; give a run directory made "
                                 "by `python -m job run`")
    return pd.read_parquet(path, columns=columns)


def neighbours(folder: Path, k: int | None = None) -> pd.DataFrame:
    """The run directory's ``neighbours.parquet`` (the first ``k`` of each token when
    given)."""
    path = Path(folder) / rundir.NEIGHBOURS
    if not path.is_file():
        raise NeighbourError(f"{folder} has no {rundir.NEIGHBOURS} (made by an older "
                             "vocabmap); rerun `python -m job run` with the run's config to "
                             "add it")
    table = pd.read_parquet(path)
    return table if k is None else table[table["rank"] <= k].reset_index(drop=True)


def neighbours_meta(folder: Path) -> dict[str, Any] | None:
    """How the run's neighbours were found (``k``, the metric, the source: the parquet
    file's ``vocabmap`` metadata), or None when there is no readable file."""
    try:
        raw = pq.read_schema(Path(folder) / rundir.NEIGHBOURS).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return json.loads(raw[b"vocabmap"]) if b"vocabmap" in raw else None


def ranked_list(folder: Path) -> pd.DataFrame:
    """The run directory's ``undertrained.csv`` (the ranked under-trained candidates)."""
    path = Path(folder) / undertrained.CSV
    if not path.is_file():
        raise rundir.RunDirError(f"{path} does not exist; run the model again with "
                                 "`vocabmap run` to write it")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])
