"""The input-embedding tensor of a model folder, as a float32 matrix.

Safetensors weights (one file, or sharded with ``model.safetensors.index.json``) are read
with numpy, no torch: only the embedding tensor, only its rows that the tokenizer uses, a
block of rows at a time straight into one float32 matrix (bf16 through its bits), so peak
memory stays near the size of that matrix whatever the model's size. Other checkpoints
(``pytorch_model.bin``) go through ``AutoModel.from_pretrained(...).get_input_embeddings()``,
which needs the ``torch`` extra.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from job.errors import SourceError, require_torch

log = logging.getLogger(__name__)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# Checkpoint names of the input embedding in common architectures, tried after the one the
# architecture itself reports.
KNOWN_NAMES = ("embed_tokens.weight", "word_embeddings.weight", "wte.weight", "embed_in.weight",
                "tok_embeddings.weight", "shared.weight", "wte.embedding.weight")


def embedding_tensor_name(folder: Path, names: list[str]) -> str:
    """The checkpoint key of the input-embedding weight.

    The architecture tells which module is the input embedding: instantiate it on the meta
    device (no memory), ask ``get_input_embeddings()`` for its parameter name, and find the
    checkpoint key that ends with it (checkpoints may carry a prefix like ``bert.`` or
    ``model.``). Unknown architectures, or no torch, fall back to the usual names.
    """
    candidates: list[str] = []
    try:
        import torch
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        weight = model.get_input_embeddings().weight
        candidates = [n for n, p in model.named_parameters(remove_duplicate=False)
                      if p is weight]
    except Exception as err:  # unknown or custom architecture
        log.debug("meta instantiation failed (%s); using known names", err)
    candidates += [n for n in KNOWN_NAMES if n not in candidates]
    for cand in candidates:
        for key in sorted(names, key=len):
            if key == cand or key.endswith("." + cand):
                return key
    raise SourceError(f"no input-embedding tensor found among {len(names)} tensors in {folder}; "
                      "expected a name ending in one of: " + ", ".join(candidates))


def _damaged(file: Path, err: Exception) -> SourceError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return SourceError(f"{file} is not a valid safetensors file (truncated or corrupt? "
                       f"{first}); re-download it")


def weight_map(index: Path) -> dict[str, str]:
    """Tensor name → shard file of a sharded checkpoint's index."""
    try:
        return dict(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    except (ValueError, KeyError, TypeError) as err:
        raise SourceError(f"{index} is not a valid safetensors index (no readable "
                          f"weight_map: {type(err).__name__}); re-download it") from err


# safetensors dtypes of an embedding matrix → the name the manifest records (torch's, as
# recorded before the reader stopped needing torch) and the numpy type to read
_DTYPES = {"F32": ("torch.float32", "<f4"), "F16": ("torch.float16", "<f2"),
           "F64": ("torch.float64", "<f8"), "BF16": ("torch.bfloat16", "<u2")}


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values given as their uint16 bit patterns → float32, exactly (a bfloat16 is
    the upper half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _rows_as_float32(file: Path, name: str, n: int, dtype: str, block: int = 8192,
                     ) -> np.ndarray:
    """The first ``n`` rows of tensor ``name`` as float32, read from the file's bytes a block
    of rows at a time (the header gives the tensor's offsets; safe_open has checked the file
    already), so memory holds the float32 matrix and one block, never a second matrix."""
    numpy_type = _DTYPES[dtype][1]
    with file.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        info = json.loads(handle.read(size))[name]
        shape = [int(s) for s in info["shape"]]
        handle.seek(8 + size + int(info["data_offsets"][0]))
        per_row = int(np.prod(shape[1:], dtype=np.int64))
        out = np.empty((n, *shape[1:]), dtype=np.float32)
        for start in range(0, n, block):
            rows = min(block, n - start)
            data = np.fromfile(handle, dtype=numpy_type, count=rows * per_row)
            if data.size != rows * per_row:
                raise _damaged(file, ValueError(f"tensor {name!r} is cut short"))
            data = data.reshape(rows, *shape[1:])
            out[start:start + rows] = bf16_to_float32(data) if dtype == "BF16" else data
    return out


class BeforeRead(Protocol):
    """Called with the (rows, dims) of a matrix about to be read, before it is allocated;
    ``matrices``: how many such matrices are then held (2 for an untied model's second)."""

    def __call__(self, rows: int, dims: int, matrices: int = 1) -> None: ...


def _slice_rows(file: Path, name: str, n_rows: int, before_read: BeforeRead | None = None,
                ) -> tuple[np.ndarray, int, str, str]:
    """(first ``n_rows`` rows of tensor ``name`` as float32, stored rows, stored dtype, name)
    from one safetensors file, read with numpy only (no torch). ``before_read(rows, dims)``
    runs once the header is read, before the matrix is allocated."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(file, framework="numpy") as f:
            part = f.get_slice(name)
            shape, dtype = [int(s) for s in part.get_shape()], part.get_dtype()
            stored = shape[0]
    except SafetensorError as err:
        raise _damaged(file, err) from err
    if dtype not in _DTYPES:
        raise SourceError(f"the tensor {name!r} in {file} is stored as {dtype}; "
                          f"vocabmap reads {', '.join(_DTYPES)} (dequantise the checkpoint)")
    if before_read is not None:
        before_read(min(n_rows, stored), int(np.prod(shape[1:], dtype=np.int64)))
    matrix = _rows_as_float32(file, name, min(n_rows, stored), dtype)  # only the used rows
    return matrix, stored, _DTYPES[dtype][0], name


def tensor_files(folder: Path) -> dict[str, Path] | None:
    """Tensor name → the safetensors file holding it (one file, or the shards of an index),
    or None when the folder has no safetensors weights."""
    from safetensors import SafetensorError, safe_open

    index = folder / INDEX
    if index.is_file():
        return {name: folder / shard for name, shard in weight_map(index).items()}
    single = folder / SINGLE
    if not single.is_file():
        return None
    try:
        with safe_open(single, framework="numpy") as f:
            return dict.fromkeys(f.keys(), single)
    except SafetensorError as err:
        raise _damaged(single, err) from err


def read_safetensors(folder: Path, n_rows: int, before_read: BeforeRead | None = None,
                     tensor: str | None = None) -> tuple[np.ndarray, int, str, str] | None:
    """(first ``n_rows`` rows as float32, stored rows, stored dtype, tensor name) of
    ``tensor`` (default: the input embedding), or None when the folder has no safetensors
    weights; ``before_read``: see :func:`_slice_rows`."""
    files = tensor_files(folder)
    if files is None:
        return None
    name = tensor or embedding_tensor_name(folder, list(files))
    return _slice_rows(files[name], name, n_rows, before_read)


def vector_facts(values: np.ndarray, name: str) -> dict[str, Any]:
    """What the manifest records of an output bias: its tensor, size and spread."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return {"tensor": name, "size": int(flat.size), "added": False,
            **{k: round(float(f(flat)), 6) for k, f in
               (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))}}


def read_bias(folder: Path, name: str) -> dict[str, Any]:
    """:func:`vector_facts` of the safetensors tensor ``name`` (read whole: it is small)."""
    files = tensor_files(folder) or {}
    values, stored, _, _ = _slice_rows(files[name], name, 1 << 62)
    return vector_facts(values[:stored], name)


def _architecture_model(folder: Path) -> Any:
    """The checkpoint's own architecture class (with its head) from config.json's
    ``architectures``, else ``AutoModel``, loaded with its weights."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    named = (getattr(config, "architectures", None) or [""])[0]
    cls = getattr(transformers, named, None) or transformers.AutoModel
    try:
        return cls.from_pretrained(folder)
    except (ValueError, TypeError, AttributeError):  # not a loadable head: the bare model
        return transformers.AutoModel.from_pretrained(folder)


def read_automodel(folder: Path, n_rows: int,
                   ) -> tuple[np.ndarray, int, str, str, np.ndarray | None, dict | None]:
    """The embedding rows of a checkpoint that is not safetensors, through the full model
    (needs torch): (input rows, stored rows, dtype, name, output rows or None when tied,
    output-bias facts or None). The output matrix is ``get_output_embeddings()``."""
    require_torch(f"reading the PyTorch weights in {folder}")
    model = _architecture_model(folder)
    weight = model.get_input_embeddings().weight.detach()
    stored, dtype = int(weight.shape[0]), str(weight.dtype)
    matrix = np.array(weight[:n_rows].float().numpy())  # own the rows; free the model
    head = model.get_output_embeddings()
    output, bias = None, None
    if head is not None and head.weight.data_ptr() != weight.data_ptr():
        output = np.array(head.weight.detach()[:n_rows].float().numpy())
    found = getattr(head, "bias", None)
    found = found if found is not None else getattr(model, "final_logits_bias", None)
    if found is not None:
        bias = vector_facts(found.detach().float().numpy(), "get_output_embeddings().bias")
    del model, weight, head
    return matrix, stored, dtype, "get_input_embeddings()", output, bias


def non_finite_rows(matrix: np.ndarray, rows: np.ndarray, block: int = 8192) -> np.ndarray:
    """Those of ``rows`` whose embedding holds a NaN or an infinity (checked in blocks, so
    the check needs little memory)."""
    bad = [rows[start:start + block][~np.isfinite(matrix[rows[start:start + block]]).all(axis=1)]
           for start in range(0, len(rows), block)]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


def check_finite(matrix: np.ndarray, rows: np.ndarray, where: str) -> None:
    """Fail, naming the count and the first ids, when a selected row is not finite: t-SNE
    would crash on it (openTSNE aborts the process) or return nonsense."""
    bad = non_finite_rows(matrix, rows)
    if len(bad):
        ids = ", ".join(str(int(i)) for i in bad[:5]) + (", …" if len(bad) > 5 else "")
        raise SourceError(f"{len(bad)} embedding rows are not finite (NaN or inf; ids {ids}); "
                          f"the checkpoint in {where} is damaged: re-download it, or leave "
                          "those ids out with [tokens] select")
