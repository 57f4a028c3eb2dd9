"""A small GPT-2 trained here on real text, with tokens its training text never holds.

The planted-row tests (``tests/builders.planted_bert``) put rows at a Gaussian draw; a real
under-trained token is a row that training barely touched, among rows training shaped. This
module makes one: a byte-level BPE (``VOCAB`` merges and bytes) trained on the Python
standard library's docstrings (``scripts/stdlib-corpus.py``), ``NEVER_SEEN`` extra plain
tokens added to it (random lowercase strings that the text never contains), and a 2-layer
GPT-2 trained on the text for ``STEPS`` AdamW steps, tied or untied. Every token id that the
encoded training text never holds (the extra tokens, and bytes and merges the text never
produces) is recorded in ``training.json`` as never seen.

A share ``COPY_SHARE`` of the training sequences are copy drills built from words of the same
text ("Input: «word»\\nOutput: «word»", a word repeated): a model this small learns, in a few
minutes, to continue the repetition prompts of the verification (``job/verify.py``) only if
it has seen some repetition. The never-seen tokens occur in no drill either.

Built once per recipe and seed, cached in
``~/.cache/vocabmap/test-models/<hash>/seed<N>/{tied,untied}`` (``VOCABMAP_TEST_MODELS``
moves it); the hash covers the recipe (the constants and the source of the functions that
build, not their docstrings; the prompts of ``job/repeat_prompts.py`` the drills use), the
corpus text and the torch, transformers and tokenizers versions, so a changed recipe builds
anew. Seeded: the same recipe on the same torch gives the same
weights. Saved with ``save_pretrained`` (safetensors) and the tokenizer, as any HF model.

    python -m tests.trained [SEED]     # build (or find) both variants, print their facts
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB, NEVER_SEEN = 2000, 40
LAYERS, DIMS, HEADS, CONTEXT = 2, 64, 4, 128
STEPS, BATCH, LR, WEIGHT_DECAY = 700, 16, 3e-3, 0.1
COPY_SHARE, THREADS = 1.0, 1  # one thread: faster than two on a shared 2-core box
EOS = "<|endoftext|>"


@dataclass(frozen=True)
class Trained:
    """One trained variant: its folder and what its training text held."""

    path: Path
    never_seen: list[int]  # token ids the encoded training text never holds
    extra: list[int]  # the added tokens (a subset of never_seen)
    counts: list[int]  # occurrences of every id in the training text
    facts: dict


def corpus_text() -> str:
    """The standard library's docstrings, one paragraph a line."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"vocabmap-corpus-{os.getpid()}.txt"
    try:
        # -I: the standard library only, whatever PYTHONPATH or the working folder add
        subprocess.run([sys.executable, "-I", str(ROOT / "scripts/stdlib-corpus.py"),
                        str(out)], check=True, capture_output=True, timeout=600)
        return out.read_text(encoding="utf-8")
    finally:
        out.unlink(missing_ok=True)


def _cache_root() -> Path:
    home = os.environ.get("VOCABMAP_TEST_MODELS")
    return Path(home) if home else Path.home() / ".cache" / "vocabmap" / "test-models"


def recipe_hash(text: str) -> str:
    """What the built models depend on (see the module docstring), hashed."""
    import tokenizers
    import torch
    import transformers

    constants = (VOCAB, NEVER_SEEN, LAYERS, DIMS, HEADS, CONTEXT, STEPS, BATCH, LR,
                 WEIGHT_DECAY, COPY_SHARE, THREADS, EOS, torch.__version__,
                 transformers.__version__, tokenizers.__version__)
    from job import repeat_prompts as rp

    digest = hashlib.sha256(repr((constants, rp.TEMPLATES)).encode("utf-8"))
    for func in (_extra_words, _tokenizer, _drills, _sequences, _train, build, rp.Prompt.ids,
                 rp.encode, rp._text, rp._begin_ids):
        code = inspect.getsource(func)
        if func.__doc__:
            code = code.replace(func.__doc__, "")
        digest.update(code.encode("utf-8"))
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()[:16]


def _extra_words(text: str, n: int, rng: random.Random) -> list[str]:
    """``n`` random lowercase strings (6-9 letters) that occur nowhere in ``text``."""
    lowered, out = text.lower(), []
    while len(out) < n:
        word = "".join(rng.choices("bcdfghjklmnpqrstvwxz", k=rng.randint(6, 9)))
        if word not in lowered and word not in out:
            out.append(word)
    return out


def _tokenizer(text: str, extra: list[str]) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text.splitlines(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS)
    fast.add_tokens([" " + w for w in extra] + extra)  # " word" and "word": both never seen
    return fast


def _drills(tokenizer: object, seen: list[int], rng: random.Random, n: int,
            ) -> list[list[int]]:
    """Copy drills (see the module docstring): the verification's own prompt forms, with
    another number of examples, each about one token the text holds, put in by id."""
    import dataclasses

    from job import repeat_prompts

    out = []
    for _ in range(n):
        template = rng.choice(repeat_prompts.TEMPLATES)
        template = dataclasses.replace(template, repeats=rng.randint(0, template.repeats))
        token = rng.choice(seen)
        prompt = repeat_prompts.encode(template, tokenizer)
        out.append(prompt.ids(token, CONTEXT * 2) + [token])
    return out


def _sequences(tokenizer: object, text: str, rng: random.Random) -> object:
    """The training text and its drills as rows of CONTEXT ids (EOS after each)."""
    import numpy as np

    eos = tokenizer.convert_tokens_to_ids(EOS)  # type: ignore[attr-defined]
    docs = tokenizer(text.splitlines(), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    seen = sorted({i for doc in docs for i in doc})
    docs += _drills(tokenizer, seen, rng, int(len(docs) * COPY_SHARE))
    rng.shuffle(docs)
    ids: list[int] = []
    for doc in docs:
        ids += doc + [eos]
    rows = len(ids) // CONTEXT
    return np.asarray(ids[:rows * CONTEXT], dtype=np.int64).reshape(rows, CONTEXT)


def _train(rows: object, vocab: int, tied: bool, seed: int) -> object:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_embd=DIMS, n_layer=LAYERS, n_head=HEADS,
                        n_positions=CONTEXT, bos_token_id=0, eos_token_id=0,
                        tie_word_embeddings=tied)
    model = GPT2LMHeadModel(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    data = torch.from_numpy(rows)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(STEPS):
        batch = data[torch.randint(len(data), (BATCH,), generator=gen)]
        for group in optimiser.param_groups:  # linear warm-up, then linear decay
            group["lr"] = LR * min(1.0, (step + 1) / 50, (STEPS - step) / (STEPS * 0.5))
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return model, float(loss.detach())


def build(folder: Path, text: str, tied: bool, seed: int = 0) -> Path:
    """Train one variant into ``folder`` (written beside it, then renamed)."""
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    rng = random.Random(seed)
    extra = _extra_words(text, NEVER_SEEN // 2, rng)
    tokenizer = _tokenizer(text, extra)
    rows = _sequences(tokenizer, text, rng)
    vocab = len(tokenizer)  # type: ignore[arg-type]
    counts = np.bincount(rows.ravel(), minlength=vocab)  # type: ignore[attr-defined]
    start = time.perf_counter()
    model, loss = _train(rows, vocab, tied, seed)
    work = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    model.save_pretrained(work)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(work)  # type: ignore[attr-defined]
    extra_ids = tokenizer.convert_tokens_to_ids(  # type: ignore[attr-defined]
        [" " + w for w in extra] + extra)
    facts = {"tied": tied, "vocab": vocab, "sequences": len(rows), "steps": STEPS,
             "final_loss": round(loss, 3), "train_seconds": round(time.perf_counter() - start, 1),
             "never_seen": np.flatnonzero(counts == 0).tolist(), "extra": list(extra_ids),
             "counts": counts.tolist()}
    (work / "training.json").write_text(json.dumps(facts), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)
    return folder


def trained_gpt2(tied: bool = True, seed: int = 0) -> Trained:
    """The cached variant, built on first use (a minute or two at low priority). ``seed``
    draws the extra tokens, the drills, the initial weights and the batches."""
    text = corpus_text()
    folder = _cache_root() / recipe_hash(text) / f"seed{seed}" / ("tied" if tied else "untied")
    if not (folder / "training.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _low_priority():
            build(folder, text, tied, seed)
    facts = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    return Trained(folder, facts.pop("never_seen"), facts.pop("extra"), facts.pop("counts"),
                   facts)


class _low_priority:  # noqa: N801 - used as a context manager
    """Raise this process's niceness while training (it cannot be lowered back)."""

    def __enter__(self) -> None:
        if hasattr(os, "nice"):
            os.nice(max(0, 10 - os.nice(0)))

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    for variant in (True, False):
        got = trained_gpt2(variant, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
        print(got.path, len(got.never_seen), "never seen;", got.facts)


def precision_at_count(score: object, known: list[int], exclude: object = ()) -> float:
    """The share of ``known`` rows among the ``len(known)`` highest ``score`` rows (ties:
    lower id first), ``exclude`` (the score's reference rows: scoring them is circular) left
    out of both."""
    import numpy as np

    values = np.asarray(score)
    keep = np.setdiff1d(np.arange(len(values)), np.asarray(exclude, dtype=np.int64))
    wanted = np.setdiff1d(np.asarray(known, dtype=np.int64), np.asarray(exclude, dtype=np.int64))
    order = keep[np.argsort(-values[keep], kind="stable")]
    return float(np.isin(order[:len(wanted)], wanted).mean())


def output_matrix(folder: Path) -> object:
    """The untied variant's output (unembedding) matrix, ``lm_head.weight``."""
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))["lm_head.weight"]


def frequent_words(model: Trained, n: int) -> list[int]:
    """The ``n`` most frequent whole words of the training text (``Ġword``, 3+ letters): the
    ordinary, well-trained tokens (the drills' own pieces, « and Output, are left out)."""
    import numpy as np
    from transformers import AutoTokenizer

    names = AutoTokenizer.from_pretrained(model.path).convert_ids_to_tokens(
        list(range(len(model.counts))))
    words = [i for i, t in enumerate(names)
             if t.startswith("Ġ") and t[1:].isalpha() and len(t) >= 4 and i not in model.extra]
    return [int(i) for i in np.asarray(words)[np.argsort(-np.asarray(model.counts)[words])][:n]]
