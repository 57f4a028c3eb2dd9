"""Model sources and the embedding read: local folders, a hub cache read offline, safetensors
(single, sharded, bf16), the AutoModel fallback, padding rows, and each error message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from job import source
from job.config import ModelConfig
from job.source import SourceError
from tests.builders import big_bert, bin_copy, tiny_bert, tiny_japanese_bert

ROOT = Path(__file__).resolve().parents[1]


def load(folder: Path | str, revision: str = "") -> source.Embeddings:
    return source.load(ModelConfig(id=str(folder), revision=revision))


def reference(folder: Path) -> np.ndarray:
    """The input embeddings as the full model has them."""
    weight = AutoModel.from_pretrained(folder).get_input_embeddings().weight
    return weight.detach().float().numpy()


def test_gpt2_padding_rows_are_dropped(gpt2_dir: Path) -> None:
    emb = load(gpt2_dir)
    n = len(emb.tokenizer)  # 600 trained + 3 added tokens, padded to 640 rows
    full = reference(gpt2_dir)
    assert full.shape[0] == 640 and full.shape[0] > n
    assert (emb.method, emb.tensor_name, emb.padding_rows) == ("safetensors",
                                                               "transformer.wte.weight", 640 - n)
    assert emb.matrix.shape == (n, 32) and emb.matrix.dtype == np.float32
    np.testing.assert_array_equal(emb.matrix, full[:n])


def test_llama_sharded_bf16_is_read_as_float32(llama_dir: Path) -> None:
    index = json.loads((llama_dir / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    emb = load(llama_dir)
    assert (emb.method, emb.tensor_name, emb.stored_dtype) == (
        "safetensors", "model.embed_tokens.weight", "torch.bfloat16")
    assert emb.matrix.dtype == np.float32 and emb.padding_rows == 0
    shard = load_file(llama_dir / index["weight_map"]["model.embed_tokens.weight"])
    np.testing.assert_array_equal(emb.matrix, shard["model.embed_tokens.weight"].float().numpy())
    head = load_file(llama_dir / index["weight_map"]["lm_head.weight"])["lm_head.weight"]
    assert not np.array_equal(emb.matrix, head.float().numpy())  # the input side, untied
    np.testing.assert_array_equal(emb.matrix, reference(llama_dir))


def test_bin_only_checkpoint_falls_back_to_automodel(bert_dir: Path, tmp_path: Path) -> None:
    pt = bin_copy(bert_dir, tmp_path / "bin-only")
    assert not list(pt.glob("*.safetensors"))
    emb = load(pt)
    assert (emb.method, emb.tensor_name) == ("automodel", "get_input_embeddings()")
    np.testing.assert_array_equal(emb.matrix, load(bert_dir).matrix)


def test_japanese_tokenizers_load_with_their_dictionary(japanese_dir: Path) -> None:
    emb = load(japanese_dir)
    tok = emb.tokenizer
    assert type(tok).__name__ == "BertJapaneseTokenizer"
    dictionary = tok.word_tokenizer.mecab.dictionary_info[0]["filename"]
    assert japanese_dir.name.removeprefix("tiny-ja-") in dictionary  # ipadic / unidic_lite
    assert tok.tokenize("東京に行く") == ["東京", "に", "行く"]
    assert emb.matrix.shape == (len(tok), 32)


def test_ipadic_folder_keeps_ipadic_where_transformers_5_would_not(tmp_path: Path) -> None:
    folder = tiny_japanese_bert(tmp_path / "whole-word-masking", "ipadic")
    assert "mecab_kwargs" not in (folder / "tokenizer_config.json").read_text()
    plain = AutoTokenizer.from_pretrained(folder)  # transformers 5's default dictionary
    assert "unidic_lite" in plain.word_tokenizer.mecab.dictionary_info[0]["filename"]
    ours = source.load_tokenizer(folder)
    assert "ipadic" in ours.word_tokenizer.mecab.dictionary_info[0]["filename"]


def test_tokenizer_larger_than_matrix_is_an_error(gpt2_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(gpt2_dir, tmp_path / "grown")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_tokens([f"new{i}" for i in range(100)])  # past the 640 rows, no resize
    tok.save_pretrained(folder)
    with pytest.raises(SourceError, match=f"the tokenizer has {len(tok)} ids but the embedding "
                                          "matrix 'transformer.wte.weight' only 640 rows"):
        load(folder)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="has no config.json"):
        load(tmp_path)
    with pytest.raises(SourceError, match="does not exist; check the path"):
        load(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="unknown embedded model"):
        load("embedded:gpt-5")
    broken = tiny_bert(tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    with pytest.raises(SourceError, match="could not load the model weights"):
        load(broken)


def fake_hub_cache(home: Path, repo: str, model: Path, commit: str = "a" * 40) -> Path:
    """A Hugging Face cache under ``home`` holding ``model`` as ``repo`` at ``commit``, laid
    out as huggingface_hub writes it (refs/main → snapshots/<commit>/files)."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(model, root / "snapshots" / commit)
    return root / "snapshots" / commit


def offline(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_hub_id_read_offline_from_the_cache(gpt2_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch, tmp_path)
    fake_hub_cache(tmp_path, "acme/tiny-gpt2", gpt2_dir)
    emb = load("acme/tiny-gpt2")
    assert emb.revision == "a" * 40 and emb.method == "safetensors"
    assert emb.label == "tiny-gpt2"
    np.testing.assert_array_equal(emb.matrix, load(gpt2_dir).matrix)
    assert load("acme/tiny-gpt2", revision="a" * 40).revision == "a" * 40


def test_offline_and_not_cached_says_how_to_pre_download(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch, tmp_path)
    with pytest.raises(SourceError) as err:
        load("acme/missing", revision="v1")
    message = str(err.value)
    assert "model 'acme/missing' at revision 'v1' is not in the Hugging Face cache" in message
    assert str(tmp_path / "hub") in message and "HF_HUB_OFFLINE=1 is set" in message
    assert f"HF_HUB_CACHE={tmp_path / 'hub'} hf download acme/missing --revision v1" in message
    assert "login node" in message and len(message.splitlines()) == 1


def test_offline_with_metadata_but_no_weights(gpt2_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch, tmp_path)
    snapshot = fake_hub_cache(tmp_path, "acme/half", gpt2_dir)
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(SourceError, match=r"the weights of 'acme/half' are not in the Hugging "
                                          r"Face cache .* hf download acme/half"):
        load("acme/half")


def test_cli_offline_error_in_a_fresh_process(fast_config: Path, tmp_path: Path) -> None:
    """HF_HOME and HF_HUB_OFFLINE as a user sets them, read by a fresh process."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "job", "run", str(fast_config), "--model",
                           "acme/missing"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vocabmap: error: model 'acme/missing' is not in the Hugging Face "
                           f"cache {tmp_path / 'empty' / 'hub'} and HF_HUB_OFFLINE=1 is set")


def test_embedding_read_peak_memory(tmp_path: Path) -> None:
    """On a model whose non-embedding part is ~6x its embeddings, the safetensors read peaks
    within 2x the embedding matrix above the process baseline; AutoModel measured alongside."""
    sys.path.insert(0, str(ROOT / "bench"))
    from embedding_memory import run

    folder = big_bert(tmp_path / "big")
    fast, full = run(folder, "safetensors", "automodel")
    print(f"\nsafetensors path: {fast}\nAutoModel path:   {full}")
    assert fast["weights_mib"] > 5 * fast["embedding_mib"]
    assert fast["peak_above_baseline_mib"] <= 2 * fast["embedding_mib"]
