"""How likely each token is to be under-trained: the ``undertrained`` and ``roundtrip`` columns.

After Land & Bartolo (2024), "Fishing for Magikarp: Automatically Detecting Under-trained
Tokens in Large Language Models" (arXiv 2405.05417, section 3), and their code
(github.com/cohere-ai/magikarp). Their indicators, computed here from the model's weights
alone, on the whole vocabulary matrix:

- **Direction** (the paper's main indicator; magikarp ``utils.embedding_distance_metrics``,
  ``cosine_distance_without_first_pc``): remove the matrix's first principal component (a
  constant direction every row shares, which would otherwise dominate every cosine), then
  take each row's cosine similarity to the mean of a *reference* set of rows known to be
  unused. Rows that never received their own gradient drift together in one direction, so
  under-trained rows point where the reference rows point. We report the similarity
  (magikarp reports the distance, 1 − similarity).
- **Magnitude** (the paper's indicator for input embeddings; magikarp ``model.py``,
  ``E_in L2 Norm``): a row that training did not reach keeps its small initial norm, or
  weight decay shrinks it towards zero, so a small L2 norm marks it.

The paper computes the direction indicator on the unembedding matrix (the same matrix as
the input embeddings in a tied model) and the norm on untied input embeddings (magikarp
``model.py``: for an untied model ``E_in L2 Norm`` comes first, then the ``E_out``
distances). vocabmap computes both indicators on the input matrix and keeps the stronger:
each indicator is turned into a robust z-score over the whole vocabulary
(``(value − median) / (1.4826 · MAD)``, signed so that higher means more under-trained;
the norm enters as its logarithm, since a row left at its initial scale is a factor off the
trained rows, not an offset), and

    undertrained = max(z_direction, z_log_norm)

An **untied** model (a separate output matrix, job/unembedding.py) is scored the same way
on each matrix, input and output, and the score is the larger of the two
(``Score.parts`` keeps each matrix's own): planted rows under-trained in the input only, the
output only, or both are all flagged by the maximum, while either matrix alone misses the
other's (docs/matrices.md, ``bench/matrices.py``). A tied model, or a checkpoint without an
output head, keeps the input matrix's score.

**Scale**: robust standard deviations beyond the typical token of this vocabulary on the
more telling indicator: about 0 for an ordinary token, 3 or more is unusual. Values compare
within one model, not across models. The choice of the maximum, and of ``z`` rather than
raw values, was made on a tuning split of a planted-rows model (``bench/undertrained.py``).

**Reference** (recorded in the manifest, ``undertrained.reference``), the first that exists:

1. ``unused``: the vocabulary's placeholder rows, category ``unused`` (``[unused12]``,
   ``<|reserved_special_token_7|>``, ``<SPECIAL_20>``, ids without a token) — the
   hand-listed ``UNUSED_TOKENS`` of magikarp's ``unused_tokens.py`` are of this kind
   (Gemma's ``<unused..>``, Yi's ``<|unused..>``, xglm's ``<madeupword..>``).
2. ``unreachable_bytes``: byte tokens that no text can produce: the bytes UTF-8 never uses
   (0xC0, 0xC1, 0xF5–0xFF; magikarp's GPT-2 / tiktoken / NeoX / Fugaku references, and its
   ``find_byte_tokens`` "unused_utf8" class), and SentencePiece byte-fallback tokens
   ``<0x41>`` of ASCII characters that have a piece of their own (magikarp's Llama-2 and
   Mistral references, "duplicate single byte").
3. ``lowest_norm``: the 0.1 % of rows with the smallest norm (at least 10). The magikarp
   README's recipe for a model without known unused tokens is to seed the reference from
   the norm indicator's first results and rerun; this does that in one step. It is the
   weakest reference: the direction indicator then only says "like the smallest rows".

**Round trip** (``roundtrip``): the token, decoded alone and encoded again, gives back
exactly this token; ``job/roundtrip.py`` tests it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from job import roundtrip

log = logging.getLogger(__name__)

COLUMN = "undertrained"
ROUNDTRIP = roundtrip.COLUMN
REFERENCES = ("unused", "unreachable_bytes", "lowest_norm")
_NEVER_UTF8 = frozenset([0xC0, 0xC1, *range(0xF5, 0x100)])
_LOWEST_NORM_SHARE, _LOWEST_NORM_MIN = 0.001, 10
_BLOCK = 65_536  # rows per block of the blockwise passes over the matrix
# prefixes that keep a token from being read as a word start (magikarp uses « and »)
# how an untied model's two per-matrix scores become one (chosen in docs/matrices.md)
COMBINATION = "max(input, output)"


@dataclass
class Score:
    """Per-row indicators of one vocabulary and how they were made."""

    undertrained: np.ndarray  # (V,) float32: max of the two robust z-scores
    cosine: np.ndarray  # (V,) float32: cosine to the reference mean, first PC removed
    norm: np.ndarray  # (V,) float32: L2 norm of the row
    reference: str  # one of REFERENCES
    reference_ids: np.ndarray  # rows of the matrix
    facts: dict[str, Any] = field(default_factory=dict)
    # each matrix's own score ("input"; "output" for an untied model): max(z_dir, z_norm)
    parts: dict[str, np.ndarray] = field(default_factory=dict)


def row_norms(matrix: np.ndarray) -> np.ndarray:
    """L2 norm of every row, a block at a time (no copy of the matrix)."""
    out = np.empty(matrix.shape[0], np.float32)
    for start in range(0, matrix.shape[0], _BLOCK):
        block = matrix[start:start + _BLOCK]
        out[start:start + _BLOCK] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def first_pc(matrix: np.ndarray, iterations: int = 12, width: int = 8,
             seed: int = 0) -> tuple[np.ndarray, float]:
    """The first principal component of the rows (centred, as sklearn's PCA in magikarp),
    by subspace iteration: a few products of the matrix with ``width`` vectors, never the
    d × d covariance or an SVD of the matrix. Returns the unit vector and its share of the
    total variance."""
    n, d = matrix.shape
    mean = matrix.mean(axis=0, dtype=np.float64)
    total = float(np.square(row_norms(matrix).astype(np.float64)).sum() / n
                  - mean @ mean)
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, min(width, d))))[0]

    def cov_times(v: np.ndarray) -> np.ndarray:  # centred covariance times v, blockwise
        acc = np.zeros_like(v)
        v32 = v.astype(np.float32)
        for start in range(0, n, _BLOCK):
            block = matrix[start:start + _BLOCK]
            acc += block.T @ (block @ v32)
        return acc / n - np.outer(mean, mean @ v)

    for _ in range(iterations):
        q = np.linalg.qr(cov_times(q))[0]
    small = q.T @ cov_times(q)  # Rayleigh-Ritz on the subspace
    values, vectors = np.linalg.eigh((small + small.T) / 2)
    pc = q @ vectors[:, -1]
    return (pc / np.linalg.norm(pc)).astype(np.float32), float(values[-1] / max(total, 1e-30))


def direction_indicator(matrix: np.ndarray, reference: np.ndarray, pc: np.ndarray,
                        norms: np.ndarray) -> np.ndarray:
    """Cosine of every row to the reference rows' mean, both with ``pc`` projected out.

    With ``p = X v`` and ``r`` the mean of the reference rows minus their ``v`` part,
    ``x' · r = x · r`` (r ⟂ v) and ``|x'|² = |x|² − p²``: no projected copy is made.
    """
    p = matrix @ pc
    r = matrix[reference].mean(axis=0) - p[reference].mean() * pc
    dots = matrix @ r.astype(np.float32)
    lengths = np.sqrt(np.maximum(norms.astype(np.float64) ** 2 - p.astype(np.float64) ** 2, 0))
    return (dots / np.maximum(lengths * np.linalg.norm(r), 1e-12)).astype(np.float32)


def robust_z(values: np.ndarray) -> np.ndarray:
    """(value − median) / (1.4826 · median absolute deviation): standard deviations for a
    normal bulk, unmoved by the tail the score is looking for."""
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * 1.4826
    return ((values - med) / max(mad, 1e-12)).astype(np.float32)


def _byte_of(token: str, family: str) -> int | None:
    """The byte a single-byte token stands for (GPT-2 byte character or ``<0xNN>``)."""
    from job.tokens import _BYTE_FALLBACK, _byte_decoder

    match = _BYTE_FALLBACK.match(token)
    if match:
        return int(match.group(1), 16)
    if family == "bytelevel" and len(token) == 1:
        return _byte_decoder().get(token)
    return None


def unreachable_bytes(table: pd.DataFrame, family: str) -> np.ndarray:
    """Rows of byte tokens no text can produce (see the module docstring, reference 2)."""
    pieces = set(table["token"].astype(str))
    found = []
    for row, token in enumerate(table["token"].astype(str)):
        value = _byte_of(token, family)
        if value is None:
            continue
        fallback = token.startswith("<0x")
        if value in _NEVER_UTF8 or (fallback and value < 0x80 and 0x20 < value < 0x7F
                                    and chr(value) in pieces):
            found.append(row)
    return np.asarray(found, dtype=np.int64)


def choose_reference(table: pd.DataFrame, family: str, norms: np.ndarray,
                     ) -> tuple[str, np.ndarray]:
    """(kind, rows) of the reference: unused, else unreachable bytes, else lowest norm."""
    unused = np.flatnonzero((table["category"].astype(str) == "unused").to_numpy())
    if len(unused):
        return "unused", unused.astype(np.int64)
    found = unreachable_bytes(table, family)
    if len(found):
        return "unreachable_bytes", found
    k = min(len(norms), max(_LOWEST_NORM_MIN, round(_LOWEST_NORM_SHARE * len(norms))))
    return "lowest_norm", np.sort(np.argpartition(norms, k - 1)[:k]).astype(np.int64)


def _one_matrix(matrix: np.ndarray, table: pd.DataFrame, family: str, which: str) -> Score:
    """The score of one finite matrix: max(z_direction, z_log_norm), with its facts."""
    norms = row_norms(matrix)
    kind, reference = choose_reference(table, family, norms)
    pc, share = first_pc(matrix)
    cosine = direction_indicator(matrix, reference, pc, norms)
    z_dir, z_norm = robust_z(cosine), robust_z(-np.log(np.maximum(norms, 1e-12)))
    combined = np.maximum(z_dir, z_norm)
    shown = table["display"].astype(str).to_numpy()
    facts = {
        "reference": kind, "reference_rows": int(len(reference)),
        "reference_first": [f"{int(i)} {shown[i]}" for i in reference[:8]],
        "first_pc_variance_share": round(share, 4),
        "direction_median": round(float(np.median(cosine)), 4),
        "norm_median": round(float(np.median(norms)), 4),
        "above_3": int((combined >= 3).sum()),
        "matrix": which,
    }
    return Score(combined, cosine, norms, kind, reference, facts, {which: combined})


def _finite_part(matrix: np.ndarray, table: pd.DataFrame, family: str,
                 output: np.ndarray | None, finite: np.ndarray) -> Score:
    """:func:`score` of the finite rows, spread back over every row (NaN elsewhere)."""
    keep = np.flatnonzero(finite)
    inner = score(np.ascontiguousarray(matrix[finite]), table[finite].reset_index(drop=True),
                  family, None if output is None else np.ascontiguousarray(output[finite]))

    def spread(part: np.ndarray) -> np.ndarray:
        full = np.full(len(finite), np.nan, np.float32)
        full[finite] = part
        return full

    inner.facts["non_finite_rows"] = int((~finite).sum())
    return Score(spread(inner.undertrained), spread(inner.cosine), spread(inner.norm),
                 inner.reference, keep[inner.reference_ids], inner.facts,
                 {k: spread(v) for k, v in inner.parts.items()})


def score(matrix: np.ndarray, table: pd.DataFrame, family: str,
          output: np.ndarray | None = None) -> Score:
    """The under-trained score of every row of ``matrix``, the input embeddings of the whole
    vocabulary (``table`` is its token table, row i = id i).

    ``output``: the separate output matrix of an untied model (None for a tied one: the
    score is then the input's alone, as it always was). Each matrix is scored on its own
    (``Score.parts["input"]``, ``Score.parts["output"]``) and the score is their maximum: a
    token under-trained in either matrix is flagged (docs/matrices.md, measured on planted
    rows). Rows with a NaN or an infinity (in either matrix) score NaN (the job refuses such
    rows when they are selected; unselected ones must not spoil the rest)."""
    finite = np.isfinite(row_norms(matrix))
    if output is not None:
        finite &= np.isfinite(row_norms(output))
    if not finite.all():
        return _finite_part(matrix, table, family, output, finite)
    start = time.perf_counter()
    result = _one_matrix(matrix, table, family, "input")
    if output is not None:
        out = _one_matrix(output, table, family, "output")
        result.undertrained = np.maximum(result.undertrained, out.undertrained)
        result.parts["output"] = out.undertrained
        result.facts = result.facts | {
            "matrix": "input+output", "combination": COMBINATION,
            "above_3": int((result.undertrained >= 3).sum()),
            "per_matrix": {"input": result.facts, "output": out.facts}}
    result.facts["seconds"] = round(time.perf_counter() - start, 2)
    facts = result.facts
    log.info("under-trained score (%s): reference %s (%d rows, e.g. %s); %d of %d rows score "
             ">= 3; %.1f s", facts["matrix"], result.reference, len(result.reference_ids),
             ", ".join(facts["reference_first"][:3]), facts["above_3"], len(finite),
             facts["seconds"])
    return result


def add_columns(table: pd.DataFrame, matrix: np.ndarray, tokenizer: Any,
                output: np.ndarray | None = None) -> dict[str, Any]:
    """Add ``undertrained`` and ``roundtrip`` to the whole-vocabulary ``table`` in place;
    returns the manifest's ``undertrained`` entry. ``matrix``: the input embeddings;
    ``output``: an untied model's output matrix (see :func:`score`)."""
    family = table.attrs.get("family", "")
    result = score(matrix, table, family, output)
    table[COLUMN] = result.undertrained
    table[ROUNDTRIP], trip = roundtrip.check(tokenizer, table, family)
    return result.facts | {"roundtrip": trip}


# --- the ranked list -------------------------------------------------------------------------

CSV = "undertrained.csv"
# the ranked list holds every token scoring at least LIST_THRESHOLD ("unusual"), at least
# LIST_MIN rows and at most LIST_MAX: a vocabulary's known placeholders alone can fill the
# first hundreds of ranks (994 [unusedN] in the embedded default)
LIST_THRESHOLD, LIST_MIN, LIST_MAX = 3.0, 500, 20_000
CSV_COLUMNS = ("rank", "token_id", "display", COLUMN, ROUNDTRIP, "category", "on_map")


def ranked(table: pd.DataFrame, on_map: np.ndarray | None = None) -> pd.DataFrame:
    """The highest-scoring rows of ``table`` (the whole vocabulary), highest first (ties:
    lower id first), with the columns of ``undertrained.csv``: every row scoring at least
    ``LIST_THRESHOLD``, within ``LIST_MIN`` … ``LIST_MAX`` rows. ``on_map`` says which ids
    the map shows (the token selection; default: all)."""
    unusual = int((table[COLUMN] >= LIST_THRESHOLD).sum())
    top = min(max(unusual, LIST_MIN), LIST_MAX)
    order = table.sort_values([COLUMN, "token_id"], ascending=[False, True],
                              na_position="last", kind="stable").head(top)
    out = order[["token_id", "display", COLUMN, ROUNDTRIP, "category"]].copy()
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out[COLUMN] = out[COLUMN].round(4)
    out["category"] = out["category"].astype(str)
    out["on_map"] = (np.ones(len(out), bool) if on_map is None
                     else np.isin(out["token_id"].to_numpy(), on_map))
    return out.reset_index(drop=True)


def write_ranked(frame: pd.DataFrame, path: Any) -> int:
    """Write a :func:`ranked` list as CSV (UTF-8, atomically); returns its row count."""
    from job.rundir import atomic_write

    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8"))
    return len(frame)
