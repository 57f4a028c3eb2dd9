"""The page's token data in one compact block: gzip of a JSON header and binary arrays, base64.

Layout of the uncompressed bytes: a little-endian uint32 header length, the header (UTF-8
JSON), then each array at an offset that is a multiple of 8 (so the browser can view it as
a typed array in place). The header holds the display texts, the raw tokens that differ
from them, the colourings (:mod:`job.render.columns`) and where each array starts. The
browser inflates it with ``DecompressionStream`` (no network, no library).

Neighbours are stored as row positions (uint16 below 65,535 tokens, else uint32) and
similarities as int16 in units of 1e-3 (the page shows three decimals), each row's first
value absolute and the rest as differences to the previous one (small numbers). Integer
arrays wider than a byte are stored as byte planes (every value's low byte, then every
value's next byte, ...), which gzip packs better: the high bytes are mostly alike. At 30k
tokens and k = 10 that makes the similarities 0.25 MB instead of 0.45 MB gzip'd.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct

import numpy as np
import pandas as pd

from job.render.columns import Colouring

SIM_UNIT = 1e-3


def neighbour_arrays(table: pd.DataFrame, near: pd.DataFrame, k: int,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, similarity codes) of shape (len(table), k) from ``neighbours.parquet``'s
    table: neighbours as rows of ``table``; a token missing from ``near`` gets none (-1)."""
    n = len(table)
    row_of = pd.Series(np.arange(n), index=table["token_id"].to_numpy())
    near = near[near["rank"] <= k]
    rows = np.full((n, k), -1, dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    src = row_of.reindex(near["token_id"].to_numpy()).to_numpy()
    dst = row_of.reindex(near["neighbour_id"].to_numpy()).to_numpy()
    ok = ~(np.isnan(src) | np.isnan(dst))
    r = src[ok].astype(np.int64)
    c = near["rank"].to_numpy()[ok].astype(np.int64) - 1
    rows[r, c] = dst[ok].astype(np.int64)
    sims[r, c] = near["similarity"].to_numpy()[ok]
    code = np.round(sims / SIM_UNIT).astype(np.int32)
    code[:, 1:] = code[:, :-1] - code[:, 1:]  # differences to the previous rank
    return rows, code.astype(np.int16)


def encode(table: pd.DataFrame, colourings: list[Colouring], near: pd.DataFrame | None,
           k: int, extra: dict[str, object]) -> str:
    """The base64 text of the block for ``table`` (rows in page order)."""
    display = table["display"].astype(str).tolist()
    raw = table["token"].astype(str).to_numpy() if "token" in table else np.array(display)
    differ = np.flatnonzero(raw != np.array(display, dtype=object))
    arrays: dict[str, np.ndarray] = {}
    ids = table["token_id"].to_numpy()
    if not (ids == np.arange(len(ids))).all():
        arrays["token_id"] = ids.astype(np.int32)
    for c in colourings:
        arrays[f"colour:{c.name}"] = c.values
    if near is not None and k:
        rows, sims = neighbour_arrays(table, near, k)
        width = np.uint16 if len(table) < 65_535 else np.uint32
        missing = np.iinfo(width).max
        arrays["neighbours"] = np.where(rows < 0, missing, rows).astype(width).ravel()
        arrays["similarity"] = sims.ravel()
    else:
        k = 0
    offsets: dict[str, list[object]] = {}
    body = bytearray()
    for name, array in arrays.items():
        body += b"\0" * (-len(body) % 8)
        little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"))
        planes = little.dtype.kind in "iu" and little.dtype.itemsize > 1
        offsets[name] = [array.dtype.name, len(body), int(array.size), planes]
        if planes:
            little = little.view(np.uint8).reshape(-1, little.dtype.itemsize).T
        body += np.ascontiguousarray(little).tobytes()
    header = {"n": len(table), "display": display, "raw_rows": differ.tolist(),
              "raw": raw[differ].tolist(), "colourings": [c.header() for c in colourings],
              "k": k, "sim_unit": SIM_UNIT, "arrays": offsets, **extra}
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    start = 4 + len(head)
    pad = -start % 8
    blob = struct.pack("<I", len(head) + pad) + head + b" " * pad + bytes(body)
    return base64.b64encode(gzip.compress(blob, compresslevel=9, mtime=0)).decode("ascii")
