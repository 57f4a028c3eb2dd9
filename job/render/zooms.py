"""Zoom regions in map coordinates: configured boxes, windows around anchor tokens, and
automatic picks from the densest clusters."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from job.config import RenderConfig, ZoomConfig
from job.errors import VocabmapError
from job.render import labels
from job.render.box import Box
from job.tokens import PLACEHOLDER, matches

log = logging.getLogger(__name__)


class ZoomError(VocabmapError, ValueError):
    """A configured zoom cannot be placed; the message says why."""


@dataclass(frozen=True)
class Region:
    """A named box to zoom on, and how it was chosen."""

    name: str
    box: Box
    how: str  # "box", "anchor:<text>" or "auto"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "box": self.box.as_list(), "how": self.how}


def window(x: np.ndarray, y: np.ndarray, cx: float, cy: float, n: int) -> Box:
    """A square centred on (cx, cy) just large enough to hold its ``n`` nearest points."""
    d = np.maximum(np.abs(x - cx), np.abs(y - cy))
    n = min(n, len(d))
    half = float(np.partition(d, n - 1)[n - 1]) * 1.05 if n else 1.0
    half = max(half, 1e-3)
    return Box.around(cx, cy, half, half)


def find_anchor(table: pd.DataFrame, text: str) -> int:
    """Row of the token whose display text (or raw token) is ``text``; word starts first."""
    for column in ("display", "token"):
        hits = table.index[table[column] == text]
        if len(hits):
            if "word_start" in table and len(hits) > 1:
                starts = hits[table.loc[hits, "word_start"].to_numpy(dtype=bool)]
                if len(starts):
                    return int(starts[0])
            return int(hits[0])
    raise ZoomError(f"anchor token {text!r} is not in this vocabulary (or not selected); "
                    "pick a token that the model's tokenizer has as a single token")


def meaningful(table: pd.DataFrame) -> np.ndarray:
    """Rows worth picking automatic zooms around: not special, not placeholders, and
    drawable (no character that every label font lacks, which would show as a box)."""
    # reserved rows ("[unused12]", "<SPECIAL_20>") are untrained: t-SNE piles them into one
    # dense blob, which would otherwise win every density contest
    keep = ~matches(table["token"].astype(str), PLACEHOLDER)
    if "category" in table:
        keep &= ~table["category"].astype(str).isin(["special", "unused"]).to_numpy()
    chars = set("".join(table["display"].astype(str)))
    missing = {c for c in chars if labels.missing(c)}
    if missing:
        keep &= ~table["display"].astype(str).map(
            lambda t: any(c in missing for c in t)).to_numpy(dtype=bool)
    return keep


def auto_regions(x: np.ndarray, y: np.ndarray, k: int, n: int = 60, bins: int = 48,
                 names: list[str] | None = None, avoid: list[Region] = (),
                 ) -> list[Region]:
    """``k`` windows around the densest, well-separated peaks of the point density.

    ``x``, ``y`` are the candidate points (e.g. only meaningful tokens); each window holds
    its ``n`` nearest of them. Peaks inside a region of ``avoid`` are skipped. With
    ``names`` (one per point) a region is named after its most central point,
    ``auto<i>_<name>``, else ``auto<i>``.
    """
    if k <= 0 or len(x) == 0:
        return []
    hist, xe, ye = np.histogram2d(x, y, bins=bins)
    # 3x3 box smoothing so a peak is a cluster, not one crowded bin
    padded = np.pad(hist, 1)
    smooth = sum(padded[i:i + bins, j:j + bins] for i in range(3) for j in range(3))
    taken = np.zeros_like(smooth, dtype=bool)
    centres_x, centres_y = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    for r in avoid:
        taken |= np.outer((centres_x >= r.box.x0) & (centres_x <= r.box.x1),
                          (centres_y >= r.box.y0) & (centres_y <= r.box.y1))
    regions: list[Region] = []
    sep = max(2, bins // 8)
    for flat in np.argsort(smooth, axis=None)[::-1]:
        if len(regions) >= k:
            break
        i, j = np.unravel_index(flat, smooth.shape)
        if taken[i, j] or smooth[i, j] == 0:
            continue
        taken[max(0, i - sep):i + sep + 1, max(0, j - sep):j + sep + 1] = True
        in_bin = (x >= xe[i]) & (x <= xe[i + 1]) & (y >= ye[j]) & (y <= ye[j + 1])
        if in_bin.any():
            cx, cy = float(np.median(x[in_bin])), float(np.median(y[in_bin]))
        else:
            cx, cy = (xe[i] + xe[i + 1]) / 2, (ye[j] + ye[j + 1]) / 2
        box = window(x, y, cx, cy, n)
        name = f"auto{len(regions) + 1}"
        if names is not None:
            central = int(np.argmin(np.hypot(x - box.centre[0], y - box.centre[1])))
            name += "_" + names[central]
        regions.append(Region(name, box, how="auto"))
    return regions


UNDERTRAINED = "undertrained"  # the score column (job/undertrained.py) and its zoom's name


def undertrained_region(table: pd.DataFrame, keep: np.ndarray, top: int,
                        ) -> Region | None:
    """A window around the densest group among the ``top`` highest-scoring rows of
    ``keep`` (ordinary tokens); None without a score column or candidates."""
    if top <= 0 or UNDERTRAINED not in table:
        return None
    score = table[UNDERTRAINED].to_numpy(dtype=float)
    rows = np.flatnonzero(keep & np.isfinite(score))
    if not len(rows):
        return None
    best = rows[np.argsort(-score[rows], kind="stable")[:top]]
    x = table["x"].to_numpy(dtype=float)[best]
    y = table["y"].to_numpy(dtype=float)[best]
    found = auto_regions(x, y, 1, n=min(60, len(best)), bins=16)
    if not found:
        return None
    return Region(UNDERTRAINED, Box(*map(float, found[0].box.as_list())),
                  how=f"undertrained:top{top}")


def _anchor_zooms(cfg: RenderConfig) -> list[ZoomConfig]:
    """The configured anchor zooms: ``zooms`` entries with an anchor, then ``anchors``."""
    return ([z for z in cfg.zooms if z.anchor]
            + [ZoomConfig(name=anchor, anchor=anchor) for anchor in cfg.anchors])


def skipped(table: pd.DataFrame, cfg: RenderConfig) -> list[dict[str, str]]:
    """Anchor zooms that are not drawn because the table lacks their anchor token:
    ``{"name", "anchor", "why"}`` each, for the manifest."""
    out = []
    for z in _anchor_zooms(cfg):
        try:
            find_anchor(table, z.anchor)
        except ZoomError as err:
            out.append({"name": z.name, "anchor": z.anchor, "why": str(err).split(";")[0]})
    return out


def check_required(table: pd.DataFrame, cfg: RenderConfig) -> None:
    """Fail before the layout when a zoom marked ``required = true`` has no anchor token in
    the (selected) token table."""
    for z in cfg.zooms:
        if z.anchor and z.required:
            try:
                find_anchor(table, z.anchor)
            except ZoomError as err:
                raise ZoomError(f"render.zooms {z.name!r} is required, but its {err}") from err


def resolve(table: pd.DataFrame, cfg: RenderConfig) -> list[Region]:
    """Configured zooms (``zooms``, then one per token of ``anchors``), then
    ``cfg.auto_zooms`` automatic ones around clusters of meaningful tokens, away from the
    configured ones. An anchor the table lacks is skipped with a warning (see
    :func:`skipped`), or fails for a zoom marked ``required``."""
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    check_required(table, cfg)
    missing = {(s["name"], s["anchor"]) for s in skipped(table, cfg)}
    regions = [_configured(table, x, y, z) for z in cfg.zooms
               if (z.name, z.anchor) not in missing]
    regions += [_configured(table, x, y, ZoomConfig(name=a, anchor=a)) for a in cfg.anchors
                if (a, a) not in missing]
    for name, anchor in sorted(missing):
        log.warning("zoom %r not drawn: anchor token %r is not in this vocabulary (or not "
                    "selected); mark the zoom required = true to make that an error",
                    name, anchor)
    keep = meaningful(table)
    worst = undertrained_region(table, keep, cfg.undertrained_zoom)
    if worst is not None and worst.name not in {r.name for r in regions}:
        regions.append(worst)
    if keep.sum() < max(cfg.auto_zooms, 1):  # nothing but placeholders: use every token
        keep[:] = True
    names = table["display"].astype(str).to_numpy()[keep].tolist()
    regions += auto_regions(x[keep], y[keep], cfg.auto_zooms, names=names, avoid=regions)
    return regions


def _configured(table: pd.DataFrame, x: np.ndarray, y: np.ndarray, z: ZoomConfig) -> Region:
    if z.box:
        return Region(z.name, Box(*z.box), how="box")
    row = find_anchor(table, z.anchor)
    pos = table.index.get_loc(row)
    return Region(z.name, window(x, y, float(x[pos]), float(y[pos]), z.neighbours),
                  how=f"anchor:{z.anchor}")
