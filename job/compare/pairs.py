"""One pair of runs: calibrated neighbourhood agreement, and per token what moved.

For the tokens two runs share, the k nearest shared tokens of every token are found in each
original embedding space and on each map (``agreement.neighbour_lists``); their overlap,
per token and on average, is calibrated against shuffles of the token correspondence
(``agreement.agreement``). The per-token table is what ``compare`` writes as
``tokens_<n>.parquet`` (columns in :data:`COLUMNS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from job.compare import agreement, metrics
from job.compare.runs import Run, by_key
from job.config import CompareConfig

WIDE = 5  # the wide agreement (ties between equal k-NN agreements) looks at WIDE × k

COLUMNS = {
    "key": "the matching key (display text with ▁ for a word start, or #id)",
    "display": "the token as shown on the maps, ## in front when it continues a word",
    "category": "its category in the first run (word, continuation, number, ...)",
    "token_id_a": "its id in run A", "token_id_b": "its id in run B",
    "agreement": "share of its k nearest shared tokens that A and B agree on (original "
                 "spaces); 0 = a new neighbourhood, 1 = the same",
    "agreement_wide": "the same over WIDE × k neighbours (orders tokens of equal agreement)",
    "agreement_map": "the same on the two maps",
    "neighbours_a": "its k nearest shared tokens in A, nearest first",
    "neighbours_b": "its k nearest shared tokens in B, nearest first",
    "moved": "aligned maps only: how far it moved from A's map to B's, in units of the "
             "maps' RMS radius",
}


def shared(a: Run, b: Run) -> list[str]:
    """Keys of both runs, sorted."""
    ka = set(a.table["key"].dropna())
    return sorted(ka.intersection(b.table["key"].dropna()))


def rows(run: Run) -> pd.DataFrame:
    """The run's layout rows by key (a key's first row)."""
    return by_key(run.table)


def xy(run: Run, keys: list[str]) -> np.ndarray:
    return rows(run).loc[keys, ["x", "y"]].to_numpy(dtype=np.float64)


def shown(table: pd.DataFrame) -> np.ndarray:
    """Display texts with ``##`` in front of the pieces that continue a word (``ing`` inside
    a word reads ``##ing``, as WordPiece writes it, whatever the tokenizer family)."""
    text = table["display"].astype(str).to_numpy()
    inside = ~table["word_start"].to_numpy(dtype=bool)
    return np.where(inside, np.char.add("##", text.astype(str)), text).astype(object)


def _subset(keys: list[str], cfg: CompareConfig) -> list[str]:
    """All keys, or a fixed random ``cfg.sample`` of them (sorted)."""
    if not cfg.sample or len(keys) <= cfg.sample:
        return keys
    pick = np.random.default_rng(cfg.seed).choice(len(keys), cfg.sample, replace=False)
    return [keys[i] for i in np.sort(pick)]


def _measure(a: np.ndarray, b: np.ndarray, cfg: CompareConfig, blocks: np.ndarray,
             searches: tuple[str, str] = ("auto", "auto"),
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[agreement.Calibrated]]:
    """Neighbour lists of both spaces (wide; ``searches``: each run's ``layout.knn``),
    per-token agreement at k and wide, calibrated mean at k."""
    k = cfg.k
    wide = min(a.shape[0] - 1, WIDE * k)
    na = agreement.neighbour_lists(a, wide, searches[0])
    nb = agreement.neighbour_lists(b, wide, searches[1])
    tokens, scores = agreement.agreement(na[:, :k], nb[:, :k], cfg.permutations, cfg.alpha,
                                         cfg.seed, blocks)
    return na, nb, np.column_stack([tokens, agreement.per_token(na, nb)]), scores


def measure(a: Run, b: Run, cfg: CompareConfig) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The pair's record for ``compare.json`` and its per-token table (None when too few
    tokens are shared)."""
    keys = shared(a, b)
    na_, nb_ = a.table["key"].nunique(), b.table["key"].nunique()
    out: dict[str, Any] = {"a": a.label, "b": b.label, "shared": len(keys),
                           "share_a": len(keys) / na_ if na_ else 0.0,
                           "share_b": len(keys) / nb_ if nb_ else 0.0,
                           "measured": 0, "original": None, "map": None,
                           "procrustes_disparity": None, "original_error": ""}
    keys = _subset(keys, cfg)
    out["measured"] = len(keys)
    if len(keys) <= cfg.k + 1:
        out["original_error"] = f"{len(keys)} shared tokens, too few for {cfg.k} neighbours"
        return out, None
    ra, rb = rows(a).loc[keys], rows(b).loc[keys]
    blocks = pd.factorize(ra["category"].astype(str))[0]
    ma, mb = ra[["x", "y"]].to_numpy(np.float64), rb[["x", "y"]].to_numpy(np.float64)
    out["procrustes_disparity"] = round(metrics.procrustes(ma, mb).disparity, 4)
    _, _, on_map, map_scores = _measure(ma, mb, cfg, blocks)
    out["map"] = [s.record() for s in map_scores]
    table = pd.DataFrame({"key": keys, "display": shown(ra),
                          "category": ra["category"].astype(str).to_numpy(),
                          "token_id_a": ra["token_id"].to_numpy(),
                          "token_id_b": rb["token_id"].to_numpy()})
    if a.vectors is not None and b.vectors is not None:
        na, nb, orig, scores = _measure(a.vectors.take(keys), b.vectors.take(keys), cfg, blocks,
                                        (a.manifest.knn, b.manifest.knn))
        out["original"] = [s.record() for s in scores]
        table["agreement"], table["agreement_wide"] = orig[:, 0], orig[:, 1]
        texts = table["display"].to_numpy()
        table["neighbours_a"] = [list(r) for r in texts[na[:, :cfg.k]]]
        table["neighbours_b"] = [list(r) for r in texts[nb[:, :cfg.k]]]
    else:
        out["original_error"] = a.vectors_error or b.vectors_error or "no vectors"
    table["agreement_map"] = on_map[:, 0]
    return out, table


def ranked(table: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` most changed and the ``n`` most stable tokens (original spaces)."""
    if "agreement" not in table:
        return table.head(0), table.head(0)
    order = table.sort_values(["agreement", "agreement_wide", "key"], kind="stable")
    stable = table.sort_values(["agreement", "agreement_wide"], ascending=False, kind="stable")
    return order.head(n), stable.head(n)
