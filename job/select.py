"""Token subsets: all rows (default), the first or last N ids (the frequent and the rare end of
a BPE vocabulary), explicit ids, a regex over the display text; then category / script
filters on whatever the rule kept."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from job.config import ConfigError, LayoutConfig, TokensConfig
from job.reduce import NEIGHBOURS_PER_PERPLEXITY, max_perplexity

log = logging.getLogger(__name__)

MIN_TOKENS = 5  # t-SNE needs a handful of points


def _rule_rows(table: pd.DataFrame, cfg: TokensConfig) -> np.ndarray:
    """Row positions the selection rule keeps, before the category / script filters."""
    n = len(table)
    if cfg.select == "all":
        return np.arange(n)
    if cfg.select == "first":
        return np.arange(min(cfg.n, n))
    if cfg.select == "last":
        return np.arange(max(0, n - cfg.n), n)
    if cfg.select == "ids":
        if not cfg.ids:
            raise ConfigError('tokens.select = "ids" needs tokens.ids = [..] with token ids')
        ids = table["token_id"].to_numpy()
        wanted = np.unique(np.asarray(cfg.ids, dtype=np.int64))
        missing = wanted[~np.isin(wanted, ids)]
        if len(missing):
            raise ConfigError(f"tokens.ids {missing[:5].tolist()} are not in this vocabulary "
                              f"(ids 0..{int(ids.max()) if len(ids) else -1})")
        return np.flatnonzero(np.isin(ids, wanted))
    if not cfg.regex:
        raise ConfigError('tokens.select = "regex" needs tokens.regex = "..."')
    try:
        pattern = re.compile(cfg.regex)
    except re.error as err:
        raise ConfigError(f"tokens.regex {cfg.regex!r} is not a valid regex ({err})") from err
    hits = table["display"].astype(str).map(lambda s: pattern.search(s) is not None)
    return np.flatnonzero(hits.to_numpy(dtype=bool))


def select(table: pd.DataFrame, cfg: TokensConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Row positions of ``table`` to lay out, and a record of the rule for the manifest.

    ``ids`` are token ids (the ``token_id`` column); ``first`` / ``last`` count rows in id
    order; ``regex`` searches the display text; ``categories`` / ``scripts`` keep only rows
    whose column has one of the given values.
    """
    rows = _rule_rows(table, cfg)
    after_rule = len(rows)
    mask = np.ones(len(rows), dtype=bool)
    for column, key, wanted in (("category", "categories", cfg.categories),
                                ("script", "scripts", cfg.scripts)):
        if wanted:
            values = table[column]
            known = set(values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype)
                        else values.astype(str).unique())
            unknown = sorted(set(wanted) - known)
            if unknown:
                raise ConfigError(f"tokens.{key} has unknown values {unknown}; "
                                  f"allowed: {', '.join(sorted(known))}")
            mask &= values.iloc[rows].isin(wanted).to_numpy()
    rows = rows[mask]
    if len(rows) < MIN_TOKENS:
        raise ConfigError(f"the token selection keeps {len(rows)} tokens; t-SNE needs at least "
                          f"{MIN_TOKENS}: widen tokens.select / tokens.categories / "
                          "tokens.scripts")
    record = {"rule": cfg.select, "n": cfg.n if cfg.select in ("first", "last") else None,
              "regex": cfg.regex or None, "ids": len(cfg.ids) or None,
              "categories": list(cfg.categories), "scripts": list(cfg.scripts),
              "after_rule": int(after_rule), "selected": int(len(rows)),
              "vocabulary": int(len(table)),
              "id_range": [int(table["token_id"].iloc[rows[0]]),
                           int(table["token_id"].iloc[rows[-1]])]}
    return rows, record


def fit_perplexity(cfg: LayoutConfig, n: int) -> tuple[LayoutConfig, dict[str, Any] | None]:
    """The layout settings for ``n`` selected tokens, and a record when the perplexity had to
    be lowered.

    t-SNE uses 3 × perplexity neighbours per token, so the perplexity can be at most
    (n − 1) / 3. The default perplexity is lowered to that limit with a warning (a small
    selection should still run); a perplexity set to anything else is an error.
    """
    limit = max_perplexity(n)
    if cfg.perplexity <= limit:
        return cfg, None
    if cfg.perplexity != LayoutConfig().perplexity:
        allowed = math.floor(limit * 100) / 100
        raise ConfigError(f"layout.perplexity = {cfg.perplexity:g} is too large for the {n} "
                          f"selected tokens: t-SNE uses 3 x perplexity neighbours per token, so "
                          f"it can be at most (n - 1) / 3 = {allowed:g}; set layout.perplexity "
                          f"<= {allowed:g} or select more tokens")
    needed = math.ceil(NEIGHBOURS_PER_PERPLEXITY * cfg.perplexity) + 1
    why = (f"the default perplexity {cfg.perplexity:g} needs at least {needed} tokens; {n} "
           "are selected, so (n - 1) / 3")
    log.warning("layout.perplexity lowered from %g to %.5g: %s", cfg.perplexity, limit, why)
    return dataclasses.replace(cfg, perplexity=limit), {
        "configured": cfg.perplexity, "used": round(limit, 4), "why": why}
