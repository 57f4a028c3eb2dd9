"""The pictures of a run directory, drawn again only when what they show has changed.

The manifest's ``render_state`` records the render settings and the layout (and neighbours)
file the pictures were drawn from; a rerun with the same ones keeps the pictures there.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from job import rundir, runread
from job.config import RenderConfig
from job.render import pictures
from job.runread import Manifest

log = logging.getLogger(__name__)


def render_pictures(table: pd.DataFrame, render: RenderConfig, folder: Path, model: str = "",
                    near: pd.DataFrame | None = None) -> dict[str, Any]:
    """Draw the pictures unless the run directory's manifest says the ones there show these
    render settings of this layout; returns the manifest's ``rendered`` and
    ``render_state``. ``near``: the neighbours this run computed."""
    state = pictures.render_state(render, folder / rundir.LAYOUT, folder / rundir.NEIGHBOURS)
    manifest = Manifest.read_if_any(folder)
    stored = manifest.render_state if manifest else {}
    rendered = manifest.rendered if manifest else None
    if pictures.up_to_date(folder, stored, state) and rendered is not None:
        log.info("pictures up to date (same render settings and layout): not redrawn")
        return {"rendered": rendered, "render_state": stored}
    if stored.get("settings") not in (None, state["settings"]):
        log.info("render settings differ from the run directory's: redrawing pictures")
    return pictures.render_recorded(table, render, folder, state, model, near)


def rerender(folder: Path, render: RenderConfig) -> list[str]:
    """Redraw a finished run's pictures with ``render`` and record them in its manifest
    (read once); returns the files drawn."""
    with rundir.claim(folder):
        table = runread.layout(folder)
        manifest = Manifest.read_if_any(folder)
        state = pictures.render_state(render, folder / rundir.LAYOUT,
                                      folder / rundir.NEIGHBOURS)
        part = pictures.render_recorded(table, render, folder, state,
                                        manifest.model.title if manifest else "")
        if manifest:  # record what the pictures now show
            rundir.write_json(folder / rundir.MANIFEST,
                              manifest.rerendered(part, dataclasses.asdict(render)))
    return part["rendered"]["files"]
