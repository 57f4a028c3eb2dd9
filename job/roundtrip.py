"""The ``roundtrip`` column: does each token survive decode → encode as itself?

Land & Bartolo (2024, arXiv 2405.05417; magikarp ``tokenization.py``, ``categorize_token``):
a token that does not come back as itself can never reach the model from text as itself (or
only inside longer strings), so it is likely under-trained whatever its weights say.
Tokenizers that add a leading space when encoding (SentencePiece's ``▁``) are tested behind a
one-token prefix, as magikarp does with ``«``; WordPiece continuations (``##ing``) cannot
stand alone and are <NA>. ``job/undertrained.py`` adds the column beside its score.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

COLUMN = "roundtrip"
_PREFIXES = ("«", "»", "|", "#", ".")


def _backend(tokenizer: Any) -> Any:
    """The fast tokenizer's Rust backend without the padding and truncation a saved
    ``tokenizer.json`` may switch on (they would add ids); None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    cached = getattr(tokenizer, "_vocabmap_plain_backend", None)
    if cached is None:
        from tokenizers import Tokenizer

        cached = Tokenizer.from_str(backend.to_str())
        cached.no_padding()
        cached.no_truncation()
        # a tokenizer that refuses new attributes rebuilds it on each call
        with contextlib.suppress(AttributeError):
            tokenizer._vocabmap_plain_backend = cached
    return cached


def _encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    backend = _backend(tokenizer)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def _decode_batch(tokenizer: Any, ids: list[list[int]]) -> list[str]:
    backend = _backend(tokenizer)
    if backend is not None:
        return backend.decode_batch(ids, skip_special_tokens=False)
    return [tokenizer.decode(i, skip_special_tokens=False) for i in ids]


def _prefix_ids(tokenizer: Any) -> list[list[int]]:
    """Token sequences to put before a token under test when the encoder would otherwise read
    it as a word start ("test" → ``▁test``): the encodings of a few short texts (magikarp
    uses «). [] when no prefix is needed."""
    probe = _encode_batch(tokenizer, ["test"])[0]
    first = tokenizer.convert_ids_to_tokens(probe[0]) if probe else ""
    if not first or first[0] not in " ▁Ġ":
        return []
    out = []
    for ids in _encode_batch(tokenizer, list(_PREFIXES)):
        if ids and ids not in out:
            out.append(ids)
    return out


def check(tokenizer: Any, table: pd.DataFrame, family: str) -> tuple[pd.Series, dict]:
    """Per row of ``table``: does the token survive decode → encode as itself? A nullable
    boolean (<NA> for WordPiece continuations), and facts for the manifest."""
    start = time.perf_counter()
    ids = table["token_id"].to_numpy().astype(int)
    result = pd.array([pd.NA] * len(ids), dtype="boolean")
    testable = np.ones(len(ids), bool)
    if family == "wordpiece":
        testable &= table["word_start"].to_numpy(dtype=bool)
    holes = table["token"].astype(str).str.startswith("<unused:").to_numpy()
    testable &= ~holes
    result[holes] = False  # no text at all
    todo = np.flatnonzero(testable)
    prefixes = _prefix_ids(tokenizer)
    ok = np.zeros(len(todo), bool)
    for lead in prefixes or [[]]:
        left = np.flatnonzero(~ok)
        if not len(left):
            break
        want = [lead + [int(ids[todo[j]])] for j in left]
        back = _encode_batch(tokenizer, _decode_batch(tokenizer, want))
        ok[left] = [b == w for b, w in zip(back, want, strict=True)]
    result[todo] = ok
    facts = {"tested": int(len(todo)), "failed": int((~ok).sum()),
             "not_testable": int(len(ids) - len(todo) - holes.sum()),
             "prefixes": [tokenizer.decode(p) for p in prefixes],
             "seconds": round(time.perf_counter() - start, 2)}
    log.info("round trip: %d of %d tokens tested, %d do not come back as themselves (%.1f s)",
             facts["tested"], len(ids), facts["failed"], facts["seconds"])
    return pd.Series(result, index=table.index, name=COLUMN), facts
