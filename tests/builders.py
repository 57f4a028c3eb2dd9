"""Tiny models the tests build and save themselves (no model hub here)."""

from __future__ import annotations

import string
from pathlib import Path

WORDS = ["the", "of", "and", "to", "in", "is", "was", "for", "on", "as", "with", "by", "at",
         "king", "queen", "man", "woman", "monday", "tuesday", "friday", "tokyo", "paris",
         "japan", "france", "run", "running", "walk", "walking", "play", "played", "world",
         "hello", "champion", "winner", "victory", "game", "team", "city", "river", "house"]


def wordpiece_vocab(extra: int = 0) -> list[str]:
    """A small WordPiece vocabulary: specials, words, ##pieces, digits, punctuation."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.punctuation) + [str(d) for d in range(10)] + ["1990", "2024", "100"]
    vocab += WORDS + ["##ing", "##ed", "##s", "##er", "##ly"]
    vocab += list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    vocab += [f"tok{i}" for i in range(extra)]
    return vocab


def tiny_bert(folder: Path, extra_tokens: int = 0, hidden: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT with a WordPiece tokenizer, saved with ``save_pretrained``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab(extra_tokens)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder
