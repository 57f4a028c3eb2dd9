"""A finished run directory read back: its manifest as typed fields, its layout.

The one place that knows the manifest's keys. A key that is missing or renamed fails with
the run directory's path and the key's name, instead of a silent default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from job import rundir


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


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of one run directory."""

    folder: Path
    data: dict[str, Any]

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of ``folder``; a missing or unreadable one is a ``RunDirError``."""
        path = Path(folder) / rundir.MANIFEST
        try:
            data = rundir.read_json(path)
        except (OSError, ValueError) as err:
            raise rundir.RunDirError(f"cannot read {path}: {err}; rerun the model to "
                                     "write it again") from err
        if not isinstance(data, dict):
            raise rundir.RunDirError(f"{path} is not a manifest (not a JSON object); rerun "
                                     "the model to write it again")
        return cls(Path(folder), data)

    @classmethod
    def read_if_any(cls, folder: Path) -> Manifest | None:
        """The manifest of ``folder``, or None where there is none that can be read."""
        try:
            return cls.read(folder)
        except rundir.RunDirError:
            return None

    def value(self, *keys: str) -> Any:
        """The value under ``keys`` (outer first); a missing key names the run directory."""
        node: Any = self.data
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                where = ".".join(keys[:depth + 1])
                raise rundir.RunDirError(f"{self.folder / rundir.MANIFEST} has no '{where}'; "
                                         "it was written by another vocabmap version: rerun "
                                         "the model")
            node = node[key]
        return node

    @functools.cached_property
    def model(self) -> ModelFacts:
        """What the manifest says of the model (its ``model`` table)."""
        return ModelFacts(
            id=str(self.value("model", "id")), path=str(self.value("model", "path")),
            revision=self.value("model", "revision"), label=str(self.value("model", "label")),
            family=str(self.value("model", "family")),
            contextual=self.value("model", "embeddings") == "contextual",
            vocab_size=int(self.value("model", "vocab_size")))

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


def layout(folder: Path) -> pd.DataFrame:
    """The run directory's ``layout.parquet``."""
    return pd.read_parquet(Path(folder) / rundir.LAYOUT)


def ranked_list(folder: Path) -> pd.DataFrame:
    """The run directory's ``undertrained.csv`` (the ranked under-trained candidates)."""
    path = Path(folder) / "undertrained.csv"
    if not path.is_file():
        raise rundir.RunDirError(f"{path} does not exist; run the model again with "
                                 "`vocabmap run` to write it")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])
