"""Contextual token vectors: counts, averages, the minimum-count rule, streaming, the job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from job import cli, contextual, runread
from job.config import ContextualConfig
from job.runread import Manifest

TEXTS = [
    "the king and the queen walk to the river",
    "monday the team played the game in tokyo",
    "hello world, the winner is the champion!",
    "running and walking in paris on friday",
    "the man and the woman play in the city",
] * 4 + ["japan 1990 victory"]


def corpus_file(folder: Path, texts: list[str] = TEXTS) -> Path:
    path = folder / "corpus.txt"
    path.write_text("\n".join(texts) + "\n\n", encoding="utf-8")  # a blank line is skipped
    return path


def direct_mean(folder: Path, token_id: int, texts: list[str], layer: int) -> np.ndarray:
    """The mean of one token's outputs, computed text by text with no batching."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    found = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt")
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer][0]
            found += [hidden[i] for i, t in enumerate(enc["input_ids"][0]) if t == token_id]
    return torch.stack(found).mean(0).numpy()


@pytest.mark.parametrize("layer", [-1, 1])
def test_counts_and_means_match_a_direct_computation(bert_dir: Path, tmp_path: Path,
                                                     layer: int) -> None:
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    cfg = ContextualConfig(corpus=(str(corpus_file(tmp_path)),), layer=layer, batch_size=4)
    vectors = contextual.compute(str(bert_dir), tokenizer, cfg, len(tokenizer))
    expected = Counter(i for t in TEXTS for i in tokenizer(t)["input_ids"])
    assert vectors.texts == len(TEXTS)
    assert vectors.tokens == sum(expected.values())
    assert {i: int(c) for i, c in enumerate(vectors.counts) if c} == dict(expected)
    means = vectors.means()
    for word in ("the", "king", "champion", "1990"):
        token_id = tokenizer.convert_tokens_to_ids(word)
        np.testing.assert_allclose(means[token_id], direct_mean(bert_dir, token_id, TEXTS, layer),
                                   rtol=1e-4, atol=1e-5)


def test_decoder_model(tmp_path: Path) -> None:
    from tests.builders import tiny_gpt2

    folder = tiny_gpt2(tmp_path / "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cfg = ContextualConfig(corpus=(str(corpus_file(tmp_path)),), batch_size=3)
    vectors = contextual.compute(str(folder), tokenizer, cfg, len(tokenizer))
    token_id = tokenizer("the")["input_ids"][0]
    assert vectors.counts[token_id] > 0
    np.testing.assert_allclose(vectors.means()[token_id],
                               direct_mean(folder, token_id, TEXTS, -1), rtol=1e-4, atol=1e-5)


def test_japanese_bert(tmp_path: Path) -> None:
    from tests.builders import tiny_japanese_bert

    folder = tiny_japanese_bert(tmp_path / "ja")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = ["東京に行く。", "東京で日本語を話す。", "東京は大きい。"]
    cfg = ContextualConfig(corpus=(str(corpus_file(tmp_path, texts)),), batch_size=2)
    vectors = contextual.compute(str(folder), tokenizer, cfg, len(tokenizer))
    tokyo = tokenizer.convert_tokens_to_ids("東京")
    assert tokyo != tokenizer.unk_token_id and vectors.counts[tokyo] == 3


def test_readers_jsonl_parquet_and_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS[:3])))
    parquet = tmp_path / "c.parquet"
    pd.DataFrame({"body": TEXTS[:2]}).to_parquet(parquet)
    assert list(contextual.iter_texts([str(jsonl)])) == TEXTS[:3]
    assert list(contextual.iter_texts([str(parquet)], column="body")) == TEXTS[:2]
    assert list(contextual.iter_texts([str(jsonl), str(jsonl)], limit=4)) == TEXTS[:3] + TEXTS[:1]
    with pytest.raises(contextual.CorpusError, match="has no column 'text'; set"):
        list(contextual.iter_texts([str(parquet)]))
    with pytest.raises(contextual.CorpusError, match="not found"):
        list(contextual.iter_texts([str(tmp_path / "missing.txt")]))


def test_large_corpus_is_streamed(tmp_path: Path) -> None:
    """Reading a 400 MB corpus raises peak memory by a small fraction of the file's size."""
    big = tmp_path / "big.txt"
    line = ("the king and the queen walk to the river " * 4).strip() + "\n"
    with big.open("w", encoding="utf-8") as handle:
        for _ in range(400):
            handle.write(line * (2**20 // len(line)))
    size_mib = big.stat().st_size / 2**20
    probe = textwrap.dedent(f"""
        import resource
        from job.contextual import iter_texts, _batches
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = sum(len(b) for b in _batches(iter_texts([{str(big)!r}]), 64))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(n, peak - base)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    texts, growth_mib = int(out[0]), float(out[1])
    assert size_mib > 390 and texts > 2_000_000
    assert growth_mib < 50, f"reading {size_mib:.0f} MiB grew memory by {growth_mib:.0f} MiB"


def test_job_maps_contextual_vectors_with_min_count(bert_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    corpus = corpus_file(tmp_path)
    config = tmp_path / "ctx.toml"
    config.write_text(textwrap.dedent(f"""
        [[models]]
        id = "{bert_dir}"
        embeddings = "contextual"
        [contextual]
        corpus = ["{corpus}"]
        min_count = 4
        batch_size = 8
        [layout]
        perplexity = 3
        early_exaggeration_iter = 30
        n_iter = 60
        [render]
        width = 300
        height = 300
        zoom_width = 300
        zoom_height = 300
        auto_zooms = 1
        [output]
        dir = "{tmp_path / 'runs'}"
    """), encoding="utf-8")
    assert cli.main(["run", str(config)]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder.name.startswith("tiny-bert-contextual-")
    table = runread.layout(folder)
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    counts = Counter(i for t in TEXTS for i in tokenizer(t)["input_ids"])
    kept = sorted(i for i, c in counts.items() if c >= 4)
    assert table["token_id"].tolist() == kept
    assert (table["occurrences"] >= 4).all()
    assert table.set_index("token_id").loc[kept, "occurrences"].tolist() == [counts[i]
                                                                            for i in kept]
    manifest = Manifest.read(folder)
    assert manifest.value("contextual", "kept") == len(kept)
    assert manifest.value("contextual", "left_out_below_min_count") == sum(
        1 for c in counts.values() if c < 4)
    assert manifest.value("contextual", "never_seen") == len(tokenizer) - len(counts)
    assert manifest.value("contextual", "texts") == len(TEXTS)
    assert manifest.value("contextual", "tokens_per_second") > 0
    # the under-trained score reads the input embeddings the contextual vectors replaced,
    # over the whole vocabulary (job/undertrained.py)
    manifest = Manifest.read(folder)
    assert manifest.value("undertrained", "matrix") == "input"
    from job import source, tokens, undertrained
    from job.config import ModelConfig

    emb = source.load(ModelConfig(id=str(bert_dir)))
    full = tokens.build_table(emb.tokenizer, emb.matrix.shape[0],
                              tokens.vocab_file_tokens(emb.path))
    want = undertrained.score(emb.matrix, full, full.attrs["family"]).undertrained
    np.testing.assert_allclose(table["undertrained"], want[kept], atol=1e-5)


def test_missing_corpus_is_a_one_line_error(bert_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "ctx.toml"
    config.write_text(f'[[models]]\nid = "{bert_dir}"\nembeddings = "contextual"\n'
                      f'[contextual]\ncorpus = ["{tmp_path / "nope.txt"}"]\n'
                      f'[output]\ndir = "{tmp_path / "runs"}"\n', encoding="utf-8")
    assert cli.main(["run", str(config)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("vocabmap: error: corpus file") and "not found" in last


def test_compare_static_against_contextual(bert_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """Input and contextual maps of one model: tokens matched by exact id, vectors stored."""
    from job.compare import compare
    from job.config import CompareConfig

    config = tmp_path / "both.toml"
    config.write_text(textwrap.dedent(f"""
        [[models]]
        id = "{bert_dir}"
        [[models]]
        id = "{bert_dir}"
        embeddings = "contextual"
        [contextual]
        corpus = ["{corpus_file(tmp_path)}"]
        min_count = 2
        [layout]
        perplexity = 3
        early_exaggeration_iter = 30
        n_iter = 60
        [render]
        width = 300
        height = 300
        html = false
        auto_zooms = 0
        anchors = ["king", "zebra"]
        [output]
        dir = "{tmp_path / 'runs'}"
    """), encoding="utf-8")
    assert cli.main(["run", str(config)]) == 0
    static, ctx = (Path(p) for p in capsys.readouterr().out.strip().splitlines()[-2:])
    stored = np.load(ctx / "vectors.npy")
    assert stored.dtype == np.float16 and stored.shape == (len(runread.layout(ctx)), 32)
    result = compare([static, ctx], out=tmp_path / "cmp", cfg=CompareConfig(anchors=("king",)))
    assert result["matched_by"] == "token_id"
    pair = result["pairs"][0]
    mapped = runread.layout(ctx)
    # every contextual token is in the input map too; specials are never matched
    assert pair["shared"] == int((mapped["category"] != "special").sum()) > 10
    assert pair["original"] is not None and 0 <= pair["original"][0]["observed"] <= 1
    assert pair["map"] is not None and pair["procrustes_disparity"] is not None
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert report.count("tiny-bert") >= 2 and "the same token id" in report
