"""`compare` at LLM vocabulary size: two 131,072 × 5,120 models with the same tokenizer.

    python bench/compare_scale.py [--planted 200] [--no-aligned] [--workdir DIR]

Model A is bench/scaling.py's ``131k`` model (Mistral NeMo's real tekken vocabulary, weights
built from each token's spelling). Model B is a sibling with the same tokenizer: A's weights
plus Gaussian noise (``--noise``, a further-trained copy), or with ``--noise 0`` weights
built afresh with another seed; then the rows of ``--planted`` ordinary tokens are rotated
among themselves (token i gets token i+1's vector), so those tokens get a neighbourhood that
has nothing to do with A's. Both are mapped by ``python -m job run``, then
``python -m job compare`` runs over them (with ``--aligned`` unless ``--no-aligned``), each in
a fresh process. Prints wall seconds and peak memory per step, the calibrated agreement, and
how many planted tokens are among the ``--planted`` most changed tokens of the per-token
table (precision at the planted set's size).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import scaling  # noqa: E402

CONFIG = """
[[models]]
id = "{a}"
name = "A"
[[models]]
id = "{b}"
name = "B"
[compare]
aligned = {aligned}
[output]
dir = "{out}"
"""


def sibling(source: Path, folder: Path, planted: int, noise: float, seed: int = 1,
            ) -> np.ndarray:
    """Model B in ``folder``: ``source``'s tokenizer and config; its weights ``source``'s
    plus Gaussian noise of ``noise`` per dimension (a further-trained copy: most
    neighbourhoods kept, some changed), or with ``noise = 0`` built afresh with another seed
    (another projection of the same spelling features: related, not equal, neighbourhoods);
    then ``planted`` ordinary tokens' rows rotated. Returns the planted token ids."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix == ".json":
            (folder / path.name).write_bytes(path.read_bytes())
    rows, dims = scaling.SIZES["131k"]
    _, texts = scaling.byte_level_vocab(rows)
    with safe_open(str(source / "model.safetensors"), "pt") as handle:
        key = next(iter(handle.keys()))
        if noise:
            base = handle.get_tensor(key).float()
            gen = torch.Generator().manual_seed(seed)
            matrix = (base + noise * torch.randn(base.shape, generator=gen)).to(torch.bfloat16)
            del base
        else:
            matrix = scaling.vectors(texts, dims, range(len(scaling.CONTROL), 1000), seed=seed)
    rng = np.random.default_rng(seed)
    words = [i for i in range(1000, rows) if texts[i].strip().isalpha() and len(texts[i]) > 4]
    ids = np.sort(rng.choice(words, size=planted, replace=False))
    matrix[torch.from_numpy(ids)] = matrix[torch.from_numpy(np.roll(ids, -1))].clone()
    save_file({key: matrix}, str(folder / "model.safetensors"))
    return ids


def step(args: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``python -m job ARGS``; (process, wall seconds, peak RSS GiB of the children)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "job", *args], cwd=ROOT, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"job {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return proc, wall, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.15,
                        help="B = A + this much Gaussian noise per dimension; 0: B is built "
                        "afresh with another seed")
    parser.add_argument("--no-aligned", action="store_true")
    parser.add_argument("--workdir", default="/tmp/vocabmap-scaling")
    args = parser.parse_args()
    work = Path(args.workdir)
    a = scaling.build("131k", work / "model-131k")
    b = work / f"model-131k-sibling-{args.noise:g}"
    start = time.perf_counter()
    planted = sibling(a, b, args.planted, args.noise)
    print(f"built B: {time.perf_counter() - start:.0f} s", flush=True)
    config = work / f"compare-131k-{args.noise:g}.toml"
    out = work / "runs-compare"
    config.write_text(CONFIG.format(a=a, b=b, out=out,
                                    aligned="false" if args.no_aligned else "true"))
    figures: dict[str, Any] = {}
    _, figures["map_s"], _ = step(["run", str(config)])
    print(f"mapped A and B: {figures['map_s']:.0f} s", flush=True)
    cmp = work / f"compare-131k-{args.noise:g}"
    _, figures["compare_s"], figures["peak_gib"] = step(
        ["compare", "--config", str(config), "--out", str(cmp)])
    result = json.loads((cmp / "compare.json").read_text())
    pair = result["pairs"][0]
    table = pd.read_parquet(cmp / pair["table"])
    worst = table.nsmallest(len(planted), ["agreement", "agreement_wide"])
    found = int(worst["token_id_a"].isin(planted).sum())
    figures |= {"shared": pair["shared"], "original": pair["original"], "map": pair["map"],
                "planted": len(planted), "planted_in_most_changed": found,
                "agreement_zero_share": round(float((table["agreement"] == 0).mean()), 4),
                "aligned": result.get("aligned"),
                "disparity_independent": [r.get("disparity_to_first")
                                          for r in result.get("runs", [])]}
    print(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
