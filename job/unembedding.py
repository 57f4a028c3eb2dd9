"""Where a checkpoint keeps its output (unembedding) matrix, and whether it is tied.

The output matrix maps the last hidden state to one logit per token: in a tied model it is
the input-embedding matrix itself, in an untied one a second vocabulary-sized tensor. Its
checkpoint names, as transformers' modelling code calls the module that
``get_output_embeddings()`` returns (prefixes such as ``model.`` are allowed):

- ``lm_head.weight``: Llama, Mistral, Mixtral, Qwen2/3, Gemma, Phi, OLMo, Falcon, OPT,
  BLOOM, GPT-2, GPT-J, MPT, T5 (v1.1 and later untie it), BART (tied)
- ``embed_out.weight``: GPT-NeoX, Pythia
- ``output.weight``: Meta's original LLaMA / Mistral checkpoints, InternLM2
- ``output_layer.weight``: ChatGLM
- ``ff_out.weight``: OLMo 1 (``hf_olmo``, config key ``weight_tying`` instead of
  ``tie_word_embeddings``; magikarp's ``model.py`` reads it so too)
- ``lm_head.decoder.weight``: RoBERTa, XLM-R (tied)
- ``cls.predictions.decoder.weight``: BERT (tied)
- ``generator_lm_head.weight``: ELECTRA's generator (tied)
- ``pred_layer.proj.weight``: XLM (tied)

An output bias, where a model has one, is found under the same module (``lm_head.bias``,
``embed_out.bias``, ``cls.predictions.bias``) or as BART / Marian / Pegasus'
``final_logits_bias``; it is recorded, never added to the rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Output-matrix names, most specific first. A generic name (``output.weight``) also ends
# many layer names (``attention.output.weight``), so it matches only at the top level.
OUTPUT_NAMES = ("lm_head.weight", "embed_out.weight", "lm_head.decoder.weight",
                "cls.predictions.decoder.weight", "generator_lm_head.weight",
                "pred_layer.proj.weight", "output_layer.weight", "transformer.ff_out.weight")
TOP_LEVEL_NAMES = ("output.weight", "model.output.weight")
BIAS_NAMES = ("lm_head.bias", "embed_out.bias", "lm_head.decoder.bias", "cls.predictions.bias",
              "cls.predictions.decoder.bias", "generator_lm_head.bias", "pred_layer.proj.bias",
              "output_layer.bias", "final_logits_bias")


@dataclass(frozen=True)
class Head:
    """The output matrix of one checkpoint: its tensor (None when tied), and why."""

    tensor: str | None  # checkpoint key of the separate output matrix; None = tied
    tied: bool
    why: str  # for the log and the manifest
    bias: str | None = None  # checkpoint key of the output bias, if any


def config_ties(folder: Path) -> bool | None:
    """``tie_word_embeddings`` (OLMo 1: ``weight_tying``) of the folder's config.json or its
    text config, None when the config does not say."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for table in (data, data.get("text_config") or {}):
        for key in ("tie_word_embeddings", "weight_tying"):
            if isinstance(table, dict) and isinstance(table.get(key), bool):
                return bool(table[key])
    return None


def _find(names: list[str], wanted: tuple[str, ...], top_level: tuple[str, ...] = ()) -> str | None:
    """The shortest checkpoint key that is, or ends with, one of ``wanted`` (in order)."""
    ordered = sorted(names, key=len)
    for cand in wanted:
        for key in ordered:
            if key == cand or key.endswith("." + cand):
                return key
    return next((key for key in top_level if key in names), None)


def locate(folder: Path, names: list[str]) -> Head:
    """The output matrix among a checkpoint's tensor ``names`` (see the module docstring).

    Tied: the config says ``tie_word_embeddings = true`` (a checkpoint may still store the
    copy), or no separate output tensor exists (an encoder saved without its head)."""
    bias = _find(names, BIAS_NAMES)
    ties = config_ties(folder)
    tensor = _find(names, OUTPUT_NAMES, TOP_LEVEL_NAMES)
    if ties:
        return Head(None, True, "tie_word_embeddings is true in config.json", bias)
    if tensor is None:
        return Head(None, True, "the checkpoint has no separate output matrix "
                    f"(none of {', '.join(OUTPUT_NAMES[:2])}, …)", bias)
    return Head(tensor, False, f"separate output matrix {tensor!r}", bias)
