"""Token subsets: all rows (default), the first or last N ids, explicit ids, a regex over the
display text, and category / script filters."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from job.config import ConfigError, TokensConfig


def select(table: pd.DataFrame, cfg: TokensConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Row numbers of ``table`` to lay out, and a record of the rule for the manifest."""
    n = len(table)
    if cfg.select == "all":
        rows = np.arange(n)
    elif cfg.select == "first":
        rows = np.arange(min(cfg.n, n))
    elif cfg.select == "last":
        rows = np.arange(max(0, n - cfg.n), n)
    elif cfg.select == "ids":
        if not cfg.ids:
            raise ConfigError('tokens.select = "ids" needs tokens.ids = [..] with token ids')
        bad = [i for i in cfg.ids if not 0 <= i < n]
        if bad:
            raise ConfigError(f"tokens.ids {bad[:5]} are outside this vocabulary (0..{n - 1})")
        rows = np.unique(np.asarray(cfg.ids, dtype=np.int64))
    else:
        try:
            pattern = re.compile(cfg.regex)
        except re.error as err:
            raise ConfigError(f"tokens.regex {cfg.regex!r} is not a valid regex ({err})") from None
        if not cfg.regex:
            raise ConfigError('tokens.select = "regex" needs tokens.regex = "..."')
        hits = table["display"].astype(str).map(lambda s: bool(pattern.search(s)))
        rows = np.flatnonzero(hits.to_numpy())
    mask = np.ones(len(rows), dtype=bool)
    for column, key, wanted in (("category", "categories", cfg.categories),
                                ("script", "scripts", cfg.scripts)):
        if wanted:
            known = set(table[column].cat.categories)
            unknown = sorted(set(wanted) - known)
            if unknown:
                raise ConfigError(f"tokens.{key} has unknown values {unknown}; "
                                  f"allowed: {', '.join(sorted(known))}")
            mask &= table[column].iloc[rows].isin(wanted).to_numpy()
    rows = rows[mask]
    if len(rows) < 5:
        raise ConfigError(f"the token selection keeps {len(rows)} tokens; t-SNE needs at least "
                          "5: widen tokens.select / tokens.categories / tokens.scripts")
    record = {"rule": cfg.select, "n": cfg.n if cfg.select in ("first", "last") else None,
              "regex": cfg.regex or None, "ids": len(cfg.ids) or None,
              "categories": list(cfg.categories), "scripts": list(cfg.scripts),
              "selected": int(len(rows)), "vocabulary": n}
    return rows, record
