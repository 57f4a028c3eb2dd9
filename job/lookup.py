"""A token's nearest neighbours looked up in a finished run directory (the ``neighbours``
command): the token found by its text, its neighbours listed with theirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from job import runread
from job.runread import NeighbourError


def find_token(layout: pd.DataFrame, text: str) -> int:
    """Row of ``layout`` whose display text is ``text``, else whose raw token is, else whose
    token id is (a number); lowest token id first. Raises :class:`NeighbourError`."""
    for column in ("display", "token"):
        hits = np.flatnonzero(layout[column].astype(str).to_numpy() == text)
        if len(hits):
            return int(hits[0])
    if text.strip().isdigit():
        hits = np.flatnonzero(layout["token_id"].to_numpy() == int(text))
        if len(hits):
            return int(hits[0])
    raise NeighbourError(f"no token {text!r} in this run (matched on display text, raw token "
                         f"and token id); {_hint(layout, text)}")


def _hint(layout: pd.DataFrame, text: str) -> str:
    """Tokens close to ``text``: same letters in another case, else those that start with
    it, else the longest that it starts with."""
    texts = layout["display"].astype(str).drop_duplicates()
    folded, want = texts.str.casefold(), text.casefold()
    for hits in (texts[folded == want], texts[folded.str.startswith(want)]):
        if len(hits):
            return "did you mean: " + ", ".join(hits.head(5))
    heads = texts[[want.startswith(t) and len(t) > 0 for t in folded]]
    if len(heads):
        return "did you mean: " + ", ".join(heads.loc[heads.str.len().sort_values(
            ascending=False).index].head(5))
    return "it may be outside the run's token selection, or not in the model's vocabulary"


def listing(folder: Path, text: str, k: int | None = None) -> pd.DataFrame:
    """The neighbours of the token ``text`` with their texts: rank, neighbour_id, display,
    similarity, map_neighbour."""
    layout = runread.layout(folder, columns=["token_id", "token", "display"])
    row = find_token(layout, text)
    table = runread.neighbours(folder, k)
    mine = table[table["token_id"] == layout["token_id"].iloc[row]]
    texts = layout.set_index("token_id")["display"]
    return mine.assign(display=texts.loc[mine["neighbour_id"]].to_numpy())[
        ["rank", "neighbour_id", "display", "similarity", "map_neighbour"]]
