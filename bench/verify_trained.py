"""The figures of docs/verify.md: the under-trained score and `verify` on the model trained here.

    .venv/bin/python bench/verify_trained.py [SEED ...]     # default: 0 1009 2018

For each seed (the seed sets 0, 1, 2 of the numeric tests) and each variant (tied, untied) of
tests/trained.py (built on first use, a few minutes each): the score's precision at their
count for the never-seen tokens, on the input matrix and (untied) the output matrix; then
`verify` on the first 260 ordinary candidates of the ranked list, and on the 60 most
frequent words.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from job import source, tokens, undertrained, verify  # noqa: E402
from job.config import ModelConfig, VerifyConfig  # noqa: E402
from tests.trained import (  # noqa: E402
    frequent_words,
    output_matrix,
    precision_at_count,
    trained_gpt2,
)

TOP, FREQUENT = 260, 60


def one(seed: int, tied: bool) -> None:
    model = trained_gpt2(tied, seed)
    emb = source.load(ModelConfig(id=str(model.path)))
    table = tokens.build_table(emb.tokenizer, emb.matrix.shape[0],
                               tokens.vocab_file_tokens(emb.path))
    name = f"seed {seed} {'tied' if tied else 'untied'}"
    matrices = {"input": emb.matrix} | ({} if tied else {"output": output_matrix(model.path)})
    if not tied:  # what `run` scores an untied model by: the larger of both scores
        matrices["both"] = (emb.matrix, matrices["output"])
    for which, matrix in matrices.items():
        first, output = matrix if which == "both" else (matrix, None)
        got = undertrained.score(first, table, table.attrs["family"], output=output)
        print(f"{name} {which}: precision at {len(model.never_seen)} never-seen: "
              f"{precision_at_count(got.undertrained, model.never_seen, got.reference_ids):.3f}"
              f" (reference {got.reference}, {len(got.reference_ids)} rows); trained in "
              f"{model.facts['train_seconds']} s")
    undertrained.add_columns(table, emb.matrix, emb.tokenizer)
    chosen = verify.candidates(undertrained.ranked(table), TOP)
    settings = VerifyConfig(device="cpu")
    asker = verify.Asker.load(model.path, settings)
    result = verify.ask(asker, chosen["token_id"].astype(int).tolist(), settings)
    never = result["token_id"].isin(model.never_seen).to_numpy()
    confirmed = result["verified"].isin(["strong", "weak"]).to_numpy()
    print(f"  verify {len(result)}: {asker.seconds:.1f} s, "
          f"{asker.tokens_seen / asker.seconds:,.0f} tokens/s; never-seen confirmed "
          f"{confirmed[never].sum()} of {never.sum()} (strong "
          f"{(result['verified'][never] == 'strong').sum()}), others confirmed "
          f"{confirmed[~never].sum()} of {(~never).sum()}; median max_prob never-seen "
          f"{np.median(result['max_prob'][never]):.2g}")
    frequent = verify.ask(asker, frequent_words(model, FREQUENT), settings)
    print(f"  {FREQUENT} frequent words: not confirmed {(frequent['verified'] == 'no').mean():.3f}"
          f", median max_prob {frequent['max_prob'].median():.3g}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["0", "1009", "2018"]:
        for variant in (True, False):
            one(int(arg), variant)
