"""``vocabmap verify RUN_DIR``: ask the model to repeat its most under-trained candidates.

The ``undertrained`` score (job/undertrained.py) reads the weights only. Land & Bartolo
(2024), "Fishing for Magikarp" (arXiv 2405.05417, section 3.3; magikarp ``fishing.py``,
``verify_magikarp`` and ``classify_verification``), confirm a candidate by prompting the
model to repeat it: a token the model cannot produce even when shown it many times is
under-trained. For each candidate and each prompt of job/repeat_prompts.py the model decodes
greedily for ``max_new_tokens`` steps (magikarp: 3); the token's highest probability over
those steps and prompts is ``max_prob``, and (magikarp's thresholds)

- ``strong``: max_prob < 0.001 — verified under-trained, strongly;
- ``weak``: 0.001 ≤ max_prob ≤ 0.1 — verified, weakly;
- ``no``: max_prob > 0.1 — the model can produce it: not confirmed (magikarp's "weak" and,
  above 0.9, "strong rejected");
- ``not tested``: every token that was not a candidate.

Candidates: the first ``verify.top`` rows of ``undertrained.csv`` that are ordinary tokens
(not special tokens, not placeholders: magikarp verifies only its "OK" tokens).

Writes ``verified.csv`` (one row per candidate), adds the ``verified`` column to
``layout.parquet`` (each atomically), records ``verified`` in the manifest and redraws the
pictures and the page, whose colour switch then offers ``verified``. A model without a
language-model head (BERT and other encoders) is one line, exit 0, nothing written.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job import rundir, runread
from job.config import VerifyConfig
from job.errors import VocabmapError, require_torch

log = logging.getLogger(__name__)

CSV = "verified.csv"
COLUMN = "verified"
LEVELS = ("strong", "weak", "no", "not tested")
STRONG, WEAK = 1e-3, 0.1  # magikarp classify_verification: < 0.001 strong, <= 0.1 weak
_CAUSAL = ("ForCausalLM", "LMHeadModel")
_SKIPPED = ("special", "unused")  # categories that are not candidates


class VerifyError(VocabmapError):
    """The run directory or the model cannot be verified; the message says what to do."""


def verdict(max_prob: float) -> str:
    """``strong``, ``weak`` or ``no`` for a candidate's highest probability."""
    if max_prob < STRONG:
        return "strong"
    return "weak" if max_prob <= WEAK else "no"


def causal_architecture(folder: Path) -> str | None:
    """The model's causal-LM class named in its ``config.json``, or None (an encoder)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VerifyError(f"cannot read {path}: {err}; the run's model folder must hold "
                          "the model's config.json") from err
    if config.get("is_encoder_decoder"):
        return None
    names = config.get("architectures") or []
    return next((n for n in names if n.endswith(_CAUSAL)), None)


def architectures(folder: Path) -> str:
    path = Path(folder) / "config.json"
    names = json.loads(path.read_text(encoding="utf-8")).get("architectures") or ["unknown"]
    return ", ".join(names)


def candidates(ranked: pd.DataFrame, top: int) -> pd.DataFrame:
    """The first ``top`` ordinary rows of ``undertrained.csv``."""
    ordinary = ~ranked["category"].astype(str).isin(_SKIPPED)
    return ranked[ordinary].head(top).reset_index(drop=True)


@dataclass
class Asker:
    """A loaded causal LM and its tokenizer, asked in batches."""

    model: Any
    tokenizer: Any
    device: str
    limit: int  # the longest prompt, in ids
    tokens_seen: int = 0  # ids run through the model (prompts and generated)
    seconds: float = 0.0

    @classmethod
    def load(cls, folder: Path, settings: VerifyConfig) -> Asker:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        want, seen = settings.device, torch.cuda.is_available()
        if want == "cuda" and not seen:
            raise VerifyError("verify.device = 'cuda' but torch sees no CUDA device; set "
                              "verify.device = 'auto' or 'cpu', or --device cpu")
        device = "cuda" if want == "cuda" or (want == "auto" and seen) else "cpu"
        dtype = "auto" if device == "cuda" else torch.float32
        major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
        name = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in 4.56
        model = AutoModelForCausalLM.from_pretrained(folder, **{name: dtype}).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        context = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None) or 4096
        return cls(model, tokenizer, device, int(context) - settings.max_new_tokens)

    @functools.cached_property
    def cache_key(self) -> str:
        """The forward's name for the key-value cache: ``cache`` (newer transformers), else
        ``past_key_values``."""
        return "cache" if "cache" in self._forward_names else "past_key_values"

    @functools.cached_property
    def _forward_names(self) -> set[str]:
        return set(inspect.signature(self.model.forward).parameters)

    def _last_logits_only(self) -> dict[str, int]:
        """Ask for the last position's logits only (a 256k vocabulary times every position
        of a batch would not fit), where the model's forward can."""
        for name in ("logits_to_keep", "num_logits_to_keep"):
            if name in self._forward_names:
                return {name: 1}
        return {}

    def max_prob(self, prompts: list[list[int]], targets: list[int], steps: int) -> np.ndarray:
        """Per prompt: the highest probability of its target over ``steps`` greedy steps."""
        import torch

        start = time.perf_counter()
        width = max(len(p) for p in prompts)
        pad = np.zeros((len(prompts), width), np.int64)
        mask = np.zeros((len(prompts), width), np.int64)
        for row, ids in enumerate(prompts):  # left padding: every prompt ends at the right
            pad[row, width - len(ids):] = ids
            mask[row, width - len(ids):] = 1
        ids, attention = torch.from_numpy(pad), torch.from_numpy(mask)
        want = torch.tensor(targets)
        best = torch.zeros(len(prompts))
        past, rows = None, torch.arange(len(prompts))
        with torch.inference_mode():
            for _ in range(steps):
                positions = (attention.cumsum(1) - 1).clamp(min=0)
                if past is not None:
                    positions = positions[:, -ids.shape[1]:]
                out = self.model(input_ids=ids.to(self.device),
                                 attention_mask=attention.to(self.device),
                                 position_ids=positions.to(self.device),
                                 use_cache=True, **{self.cache_key: past},
                                 **self._last_logits_only())
                probs = out.logits[:, -1].float().softmax(-1).cpu()
                best = torch.maximum(best, probs[rows, want])
                past, ids = getattr(out, self.cache_key), probs.argmax(-1, keepdim=True)
                attention = torch.cat([attention, torch.ones_like(ids)], 1)
        self.tokens_seen += int(mask.sum()) + len(prompts) * (steps - 1)
        self.seconds += time.perf_counter() - start
        return best.numpy()


def ask(asker: Asker, token_ids: list[int], settings: VerifyConfig) -> pd.DataFrame:
    """Per token: its highest probability under each template, the maximum and the verdict."""
    from job import repeat_prompts

    out = pd.DataFrame({"token_id": token_ids})
    for prompt in repeat_prompts.prompts(asker.tokenizer):
        jobs = [prompt.ids(t, asker.limit) for t in token_ids]
        order = np.argsort([len(j) for j in jobs], kind="stable")  # like lengths together
        probs = np.zeros(len(jobs), np.float32)
        for start in range(0, len(jobs), settings.batch_size):
            part = order[start:start + settings.batch_size]
            probs[part] = asker.max_prob([jobs[i] for i in part],
                                         [token_ids[i] for i in part], settings.max_new_tokens)
        out[f"p_{prompt.template}"] = probs
    out["max_prob"] = out.filter(like="p_").max(axis=1)
    out[COLUMN] = [verdict(p) for p in out["max_prob"]]
    return out


def verified_column(table: pd.DataFrame, result: pd.DataFrame) -> pd.Categorical:
    """The layout's ``verified`` column: each tested token's verdict, else "not tested"."""
    found = pd.Series(result[COLUMN].to_numpy(), index=result["token_id"].to_numpy())
    values = found.reindex(table["token_id"].to_numpy()).fillna("not tested")
    return pd.Categorical(values.to_numpy(), categories=list(LEVELS))


def _facts(result: pd.DataFrame, asker: Asker, top: int) -> dict[str, Any]:
    counts = result[COLUMN].value_counts()
    rate = asker.tokens_seen / max(asker.seconds, 1e-9)
    return {"file": CSV, "tested": len(result), "top": top,
            **{level: int(counts.get(level, 0)) for level in LEVELS[:3]},
            "thresholds": {"strong_below": STRONG, "weak_up_to": WEAK},
            "templates": [c.removeprefix("p_") for c in result.columns if c.startswith("p_")],
            "chat_template": bool(getattr(asker.tokenizer, "chat_template", None)),
            "device": asker.device, "seconds": round(asker.seconds, 2),
            "tokens_per_second": round(rate)}


def write(folder: Path, result: pd.DataFrame, facts: dict[str, Any]) -> None:
    """``verified.csv``, the layout's column and the manifest entry, each atomically."""
    rundir.atomic_write(folder / CSV,
                        lambda tmp: result.to_csv(tmp, index=False, encoding="utf-8"))
    table = runread.layout(folder)
    table[COLUMN] = verified_column(table, result)
    rundir.atomic_write(folder / rundir.LAYOUT, lambda tmp: table.to_parquet(tmp, index=False))
    manifest = runread.Manifest.read(folder)
    rundir.write_json(folder / rundir.MANIFEST, manifest.data | {COLUMN: facts})


def verify_run(folder: Path, settings: VerifyConfig) -> Path | None:
    """Verify a finished run directory; returns ``verified.csv``, or None (with one line on
    standard error) for a model without a language-model head."""
    import sys

    from job import render_cache, repeat_prompts
    from job.config import from_dict

    folder = Path(folder)
    manifest = runread.Manifest.read(folder)
    model_folder = Path(manifest.model.path)
    if causal_architecture(model_folder) is None:
        print(f"vocabmap: verify: {manifest.model.id} ({architectures(model_folder)}) has no "
              "language-model head to ask, so its candidates cannot be verified; nothing "
              "written", file=sys.stderr)
        return None
    chosen = candidates(runread.ranked_list(folder), settings.top)
    require_torch("vocabmap verify (the model is asked to repeat its tokens)")
    asker = Asker.load(model_folder, settings)
    log.info("verify: asking %s on %s about %d candidates, %d prompts each",
             manifest.model.id, asker.device, len(chosen), len(repeat_prompts.TEMPLATES))
    result = ask(asker, chosen["token_id"].astype(int).tolist(), settings)
    result.insert(1, "display", chosen["display"].to_numpy())
    result.insert(2, "undertrained", chosen["undertrained"].to_numpy())
    result.insert(0, "rank", chosen["rank"].to_numpy())
    facts = _facts(result, asker, settings.top)
    log.info("verify: %d tested: %d strong, %d weak, %d not confirmed; %.1f s, %s tokens/s "
             "on %s", facts["tested"], facts["strong"], facts["weak"], facts["no"],
             facts["seconds"], f"{facts['tokens_per_second']:,}", asker.device)
    with rundir.claim(folder):
        write(folder, result, facts)
    render_cache.rerender(folder, from_dict({"render": manifest.render}).render)
    return folder / CSV
