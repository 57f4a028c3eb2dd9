"""Contextual token vectors: the model's outputs at one layer, averaged per vocabulary token.

The corpus is streamed: texts are read lazily from plain text (one text per line), JSON Lines
or parquet files, tokenised and run through the model one batch at a time, and each token's
output vectors are summed into a (V × d) table with a count per id. Memory stays at one batch
plus that table however large the corpus is.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from job.config import ContextualConfig
from job.errors import VocabmapError, require_torch

log = logging.getLogger(__name__)


class CorpusError(VocabmapError, ValueError):
    """The corpus cannot be read; the message names the file and the fix."""


@dataclass
class ContextualVectors:
    """Mean output vector per token id, and how many occurrences each mean rests on."""

    sums: np.ndarray  # (V, d) float64 sums; see ``means``
    counts: np.ndarray  # (V,) int64
    texts: int
    tokens: int
    seconds: float
    layer: int
    device: str

    def means(self) -> np.ndarray:
        """(V, d) float32; rows of unseen tokens are zero."""
        safe = np.maximum(self.counts, 1)[:, None]
        return (self.sums / safe).astype(np.float32)


def check_corpus(cfg: ContextualConfig) -> None:
    """Fail early, before a model is loaded, when a corpus file or torch is missing."""
    require_torch("a contextual map (the model runs over the corpus)")
    for raw in cfg.corpus:
        if not Path(raw).expanduser().is_file():
            raise CorpusError(f"corpus file {raw!r} not found; check [contextual] corpus")


def iter_texts(paths: Iterable[str], column: str = "text", limit: int = 0) -> Iterator[str]:
    """Texts from each file in turn, read lazily; ``limit`` > 0 stops after that many."""
    seen = 0
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise CorpusError(f"corpus file {str(path)!r} not found; check [contextual] corpus")
        for text in _read(path, column):
            if not text.strip():
                continue
            yield text
            seen += 1
            if limit and seen >= limit:
                return


def _read(path: Path, column: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        if column not in file.schema_arrow.names:
            raise CorpusError(f"{path} has no column {column!r}; set [contextual] column to one "
                              f"of: {', '.join(file.schema_arrow.names)}")
        for batch in file.iter_batches(batch_size=1024, columns=[column]):
            yield from (t for t in batch.column(0).to_pylist() if isinstance(t, str))
    elif suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if column not in record:
                    raise CorpusError(f"{path}:{number} has no field {column!r}; set "
                                      "[contextual] column to the text field")
                yield str(record[column])
    else:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")


def _batches(texts: Iterator[str], size: int, pool: int = 16) -> Iterator[list[str]]:
    """Batches of ``size`` texts of similar length, so little compute goes to padding.

    Texts are read ``size × pool`` at a time, sorted by length within that window, and cut
    into batches: memory stays bounded however long the stream.
    """
    window: list[str] = []

    def flush() -> Iterator[list[str]]:
        window.sort(key=len)
        for i in range(0, len(window), size):
            yield window[i:i + size]
        window.clear()

    for text in texts:
        window.append(text)
        if len(window) == size * pool:
            yield from flush()
    yield from flush()


def pick_device(wanted: str) -> str:
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise CorpusError('[contextual] device = "cuda" but torch sees no CUDA device; use '
                          '"auto" or "cpu"')
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def load_model(folder: str, device: str) -> Any:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    return model.to(device).eval()


def accumulate(model: Any, tokenizer: Any, texts: Iterator[str], cfg: ContextualConfig,
               vocab_size: int, device: str) -> ContextualVectors:
    """Run ``model`` over ``texts`` in batches; sum each token's vectors at ``cfg.layer``."""
    import torch
    from tqdm import tqdm

    n_layers = model.config.num_hidden_layers + 1  # hidden_states includes the embeddings
    if not -n_layers <= cfg.layer < n_layers:
        raise CorpusError(f"contextual.layer = {cfg.layer} is out of range for this model: "
                          f"choose -{n_layers}..{n_layers - 1} (0 = embedding output)")
    if tokenizer.pad_token is None:  # GPT-2 style tokenizers have no padding token
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    dims = model.config.hidden_size
    sums = torch.zeros((vocab_size, dims), dtype=torch.float64, device=device)
    counts = torch.zeros(vocab_size, dtype=torch.int64, device=device)
    n_texts = n_tokens = 0
    start = time.perf_counter()
    bar = tqdm(desc="contextual", unit="tok", unit_scale=True, mininterval=2.0)
    with torch.inference_mode(), bar:
        for batch in _batches(texts, cfg.batch_size):
            enc = tokenizer(batch, truncation=True, max_length=cfg.max_length, padding=True,
                            return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model(**enc, output_hidden_states=True)
            hidden = out.hidden_states[cfg.layer]  # (B, T, d)
            mask = enc["attention_mask"].bool()
            ids = enc["input_ids"][mask]
            sums.index_add_(0, ids, hidden[mask].to(torch.float64))
            counts += torch.bincount(ids, minlength=vocab_size)[:vocab_size]
            n_texts += len(batch)
            n_tokens += int(mask.sum())
            bar.update(int(mask.sum()))
    seconds = time.perf_counter() - start
    log.info("contextual: %d texts, %d tokens in %.1f s (%.0f tokens/s) on %s", n_texts,
             n_tokens, seconds, n_tokens / max(seconds, 1e-9), device)
    if n_texts == 0:
        raise CorpusError("the corpus has no non-empty texts; check [contextual] corpus")
    return ContextualVectors(sums.cpu().numpy(), counts.cpu().numpy(), n_texts, n_tokens,
                             round(seconds, 3), cfg.layer, device)


def compute(folder: str, tokenizer: Any, cfg: ContextualConfig, vocab_size: int,
            ) -> ContextualVectors:
    """Load the model from ``folder`` and average its outputs over the configured corpus."""
    check_corpus(cfg)
    device = pick_device(cfg.device)
    model = load_model(folder, device)
    texts = iter_texts(cfg.corpus, cfg.column, cfg.max_texts)
    return accumulate(model, tokenizer, texts, cfg, vocab_size, device)


def facts(vectors: ContextualVectors, cfg: ContextualConfig) -> dict[str, Any]:
    """The manifest's ``contextual``: the corpus pass and how many tokens it kept."""
    seen = vectors.counts > 0
    kept = vectors.counts >= cfg.min_count
    found = {"corpus": list(cfg.corpus), "layer": cfg.layer, "min_count": cfg.min_count,
             "texts": vectors.texts, "tokens": vectors.tokens, "device": vectors.device,
             "seconds": vectors.seconds,
             "tokens_per_second": round(vectors.tokens / max(vectors.seconds, 1e-9), 1),
             "vocabulary_seen": int(seen.sum()), "kept": int(kept.sum()),
             "left_out_below_min_count": int((seen & ~kept).sum()),
             "never_seen": int((~seen).sum())}
    log.info("contextual: %d vocabulary tokens seen, %d kept (>= %d occurrences), %d below, "
             "%d never seen", found["vocabulary_seen"], found["kept"], cfg.min_count,
             found["left_out_below_min_count"], found["never_seen"])
    return found
