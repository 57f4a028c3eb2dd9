"""Which matrix finds under-trained rows of an untied model: input, output, or both combined.

    .venv/bin/python bench/matrices.py [--seeds 0 1 2] [--planted 100]

A tiny untied model per seed: the embedded default's vocabulary (30,522 WordPiece tokens,
994 ``[unusedN]`` placeholders) and its trained input matrix; as output matrix, a second
trained-like matrix of the same shape (low-rank "meaning", shared offset, uneven norms;
tests/builders.py ``trained_like_matrix``). Three disjoint sets of ``--planted`` latin word
rows are made under-trained:

- **input only**: the input row left at its initialisation, N(0, 0.02) (the paper's norm
  indicator: a row no gradient reached keeps its small initial norm);
- **output only**: the output row drifted along one shared direction at the trained rows'
  median norm, as the unembedding rows of tokens that are never a target do (they receive
  only the softmax's push-down gradient, the same direction for every such row; Land &
  Bartolo 2024, section 3). Its norm is ordinary: only the direction tells;
- **both**: both of the above.

The ``[unused]`` rows are drifted in the output matrix too (they are never targets either),
so the reference set of the direction indicator is the one the job picks on its own.
Figures, per score (the input matrix's own score, the output matrix's, and combinations):
for each group, the share of its rows that score >= 3 (the job's "unusual": the ranked
list and the manifest's ``above_3`` use it), and how many of the other latin word rows do
too; then each group's share among the top ``3 × planted`` latin word rows (the size of all
planted rows). The input matrix is a trained model's, so some real words score high in it
already (rows with small norms): they compete for the top ranks. Prints Markdown tables
(docs/matrices.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.undertrained import INIT_STD, latin_words, load_default  # noqa: E402
from job import undertrained  # noqa: E402
from tests.builders import trained_like_matrix  # noqa: E402

GROUPS = ("input only", "output only", "both")


def planted_model(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, object, dict]:
    """(input, output, token table, group → planted ids) of one seed's untied model."""
    matrix, table, _, _ = load_default()
    rng = np.random.default_rng(seed)
    output = np.asarray(trained_like_matrix(*matrix.shape, seed=seed + 100))
    typical = float(np.median(np.linalg.norm(output, axis=1)))
    drift = rng.standard_normal(matrix.shape[1])
    drift *= typical / np.linalg.norm(drift)

    def drifted(rows: int) -> np.ndarray:
        return (drift + rng.normal(0, 0.1 * typical / np.sqrt(matrix.shape[1]),
                                   (rows, matrix.shape[1]))).astype(np.float32)

    unused = np.flatnonzero((table["category"].astype(str) == "unused").to_numpy())
    output[unused] = drifted(len(unused))
    chosen = rng.choice(latin_words(table), 3 * n, replace=False)
    groups = {g: np.sort(chosen[i * n:(i + 1) * n]) for i, g in enumerate(GROUPS)}
    for g in ("input only", "both"):
        matrix[groups[g]] = rng.normal(0, INIT_STD, (n, matrix.shape[1])).astype(np.float32)
    for g in ("output only", "both"):
        output[groups[g]] = drifted(n)
    return matrix, output, table, groups


def scores(matrix: np.ndarray, output: np.ndarray, table: object) -> dict[str, np.ndarray]:
    """The candidate scores: each matrix alone, the output's direction alone, combinations."""
    result = undertrained.score(matrix, table, "wordpiece", output)
    z_in, z_out = result.parts["input"], result.parts["output"]
    out_only = undertrained.score(output, table, "wordpiece")
    return {"input matrix (today's score)": z_in,
            "output matrix": z_out,
            "output direction only (paper)": undertrained.robust_z(out_only.cosine),
            "mean(input, output)": (z_in + z_out) / 2,
            "max(input, output) (chosen)": result.undertrained}


def found(score: np.ndarray, table: object, groups: dict) -> dict[str, float]:
    """Per group: share scoring >= 3 (``g``) and share among the top (all planted) latin
    word rows (``top g``); ``others >= 3``: the unplanted latin word rows scoring >= 3."""
    words = latin_words(table)
    planted = np.concatenate(list(groups.values()))
    top = words[np.argsort(-score[words], kind="stable")[:len(planted)]]
    out = {g: float((score[ids] >= 3).mean()) for g, ids in groups.items()}
    out |= {f"top {g}": float(np.isin(ids, top).mean()) for g, ids in groups.items()}
    out["others >= 3"] = float((score[np.setdiff1d(words, planted)] >= 3).sum())
    return out


def table_of(figures: dict[str, list[dict[str, float]]], columns: list[str]) -> None:
    """One Markdown table: mean over seeds, lowest in brackets."""
    print("| score | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, runs in figures.items():
        cells = [f"{np.mean([r[c] for r in runs]):.3g} ({np.min([r[c] for r in runs]):.3g})"
                 for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--planted", type=int, default=100)
    args = parser.parse_args()
    figures: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        matrix, output, table, groups = planted_model(seed, args.planted)
        for name, score in scores(matrix, output, table).items():
            figures.setdefault(name, []).append(found(score, table, groups))
    print(f"{args.planted} rows planted per group; mean over seeds {args.seeds} (lowest in "
          "brackets)\n\nshare scoring >= 3, and unplanted latin word rows scoring >= 3:\n")
    table_of(figures, [*GROUPS, "others >= 3"])
    print(f"\nshare among the top {3 * args.planted} latin word rows:\n")
    table_of(figures, [f"top {g}" for g in GROUPS])
    return 0


if __name__ == "__main__":
    sys.exit(main())
