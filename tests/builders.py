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
    return list(dict.fromkeys(vocab))  # no duplicates: one id per token


def tiny_bert(folder: Path, extra_tokens: int = 0, hidden: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT with a WordPiece tokenizer, saved with ``save_pretrained``."""
    folder.mkdir(parents=True, exist_ok=True)
    return tiny_bert_from_vocab(folder, wordpiece_vocab(extra_tokens), hidden, seed)


# --- other model families (byte-level BPE, SentencePiece-style, Japanese BERT) -------------

JAPANESE = ["東京に行く。", "日本語を話す。", "こんにちは、世界。", "カタカナで書く。",
            "走るのが速い。"]


def corpus(lines: int = 400, seed: int = 0) -> list[str]:
    """Generated training text: English words, numbers, punctuation, newlines, and some
    Japanese, Cyrillic and Korean so byte-level merges cover multibyte UTF-8."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(lines):
        words = rng.choices(WORDS, k=rng.randint(4, 12))
        line = " ".join(words).capitalize() + rng.choice([".", ",", "!", "?"])
        line += f" {rng.choice(['1990', '2024', '100', str(i)])}"
        if i % 3 == 0:
            line += " " + rng.choice(JAPANESE)
        if i % 7 == 0:
            line += " мир привет 한국어"
        out.append(line + ("\n" if i % 2 else "\n\n"))
    return out


def _save_model(model: object, folder: Path, dtype: str | None, shard: str | None) -> None:
    import torch

    if dtype:
        model = model.to(getattr(torch, dtype))  # type: ignore[attr-defined]
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, **kwargs)  # type: ignore[attr-defined]


def gpt2_tokenizer(folder: Path, vocab_size: int = 600) -> object:
    """A GPT-2 style byte-level BPE trained with ``tokenizers``, plus three added tokens:
    ``<|tool|>`` (special), ``vocabmap`` and ``café`` (plain)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    fast.add_tokens(["vocabmap", "café"])  # plain added tokens are stored as text
    fast.save_pretrained(folder)
    return fast


def tiny_gpt2(folder: Path, pad_to: int = 64, hidden: int = 32, dtype: str | None = None,
              shard: str | None = None, seed: int = 0) -> Path:
    """A random 2-layer GPT-2 (LM head) with a byte-level BPE tokenizer. The embedding matrix
    is padded up to a multiple of ``pad_to`` rows, as GPT-2 style models often are."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    n = len(gpt2_tokenizer(folder))  # type: ignore[arg-type]
    rows = -(-n // pad_to) * pad_to
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=rows, n_embd=hidden, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    _save_model(GPT2LMHeadModel(config), folder, dtype, shard)
    return folder


def llama_tokenizer(folder: Path, vocab_size: int = 500) -> object:
    """A LLaMA/SentencePiece style BPE: ``▁`` word starts (Metaspace) and the 256
    ``<0x..>`` byte-fallback tokens at ids 3..258, trained with ``tokenizers``."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = metaspace
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120)  # rare characters left to byte fallback
    # no newline in the training text: it reaches the model as the byte token <0x0A>
    tok.train_from_iterator([line.replace("\n", " ") for line in corpus()], trainer)
    trained = json.loads(tok.to_str())["model"]
    vocab = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    vocab += [t for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1])
              if t not in vocab]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges,
                     unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    final = Tokenizer(bpe)
    final.pre_tokenizer = metaspace
    final.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁"),
                                       decoders.ByteFallback(), decoders.Fuse()])
    fast = PreTrainedTokenizerFast(tokenizer_object=final, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<unk>", "<s>", "</s>"]})
    fast.save_pretrained(folder)
    return fast


def tiny_llama(folder: Path, hidden: int = 32, dtype: str | None = "bfloat16",
               shard: str | None = "40KB", seed: int = 0, edit: object = None) -> Path:
    """A random 2-layer Llama (LM head, untied) in bf16, saved as sharded safetensors with a
    ``model.safetensors.index.json``, with a SentencePiece-style byte-fallback tokenizer.
    ``edit(model)``, when given, changes the weights before they are saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    n = len(llama_tokenizer(folder))  # type: ignore[arg-type]
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=n, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    if edit is not None:
        with torch.no_grad():
            edit(model)  # type: ignore[operator]
    _save_model(model, folder, dtype, shard)
    return folder


def twin_llama(folder: Path, pairs: int = 8, dtype: str | None = "bfloat16",
               shard: str | None = "40KB", seed: int = 0,
               ) -> tuple[Path, list[tuple[int, int]], list[tuple[int, int]]]:
    """A tiny untied Llama whose input and output rows differ by construction: ``pairs``
    token pairs are near-copies of each other in the output matrix only (``lm_head``), and
    as many other pairs in the input matrix only. Returns the folder, the output twins and
    the input twins (token ids, among the ordinary tokens after the byte tokens)."""
    import torch

    def edit(model: object) -> None:
        generator = torch.Generator().manual_seed(seed + 1)
        ids = (300 + torch.randperm(150, generator=generator)[:4 * pairs]).tolist()
        for matrix, chosen in ((model.lm_head.weight, out_twins),  # type: ignore[attr-defined]
                               (model.get_input_embeddings().weight, in_twins)):  # type: ignore[attr-defined]
            for _ in range(pairs):
                a, b = ids.pop(), ids.pop()
                noise = torch.randn(matrix.shape[1], generator=generator) * 1e-3
                matrix[b] = matrix[a] + noise
                chosen.append((a, b))

    out_twins: list[tuple[int, int]] = []
    in_twins: list[tuple[int, int]] = []
    tiny_llama(folder, dtype=dtype, shard=shard, seed=seed, edit=edit)
    return folder, out_twins, in_twins


JA_VOCAB = ["東京", "日本", "日本語", "語", "##語", "##京", "です", "は", "が", "に", "を", "の",
            "行く", "走る", "話す", "書く", "速い", "世界", "こんにちは", "カタカナ", "##る",
            "##く", "##い", "。", "、", "1990", "the", "##ing", "мир", "한국"]


def tiny_japanese_bert(folder: Path, dictionary: str = "unidic_lite", hidden: int = 32,
                       seed: int = 0) -> Path:
    """A random BERT with a ``BertJapaneseTokenizer`` (MeCab word splitting + WordPiece).

    ``unidic_lite`` is saved as the cl-tohoku v2/v3 models are (``mecab_kwargs`` in
    tokenizer_config.json); ``ipadic`` is laid out as bert-base-japanese-whole-word-masking
    on the hub: no ``mecab_kwargs`` and ``tokenizer_class`` only in config.json.
    """
    import json

    import torch
    from transformers import BertConfig, BertJapaneseTokenizer, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + JA_VOCAB
    vocab += [f"[unused{i}]" for i in range(3)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    extra: dict[str, object] = {}
    if dictionary == "ipadic":
        settings = {"do_lower_case": False, "word_tokenizer_type": "mecab",
                    "subword_tokenizer_type": "wordpiece", "model_max_length": 512}
        (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")
        extra["tokenizer_class"] = "BertJapaneseTokenizer"
    else:
        BertJapaneseTokenizer(str(folder / "vocab.txt"), do_lower_case=False,
                              word_tokenizer_type="mecab",
                              mecab_kwargs={"mecab_dic": dictionary}).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=64, **extra)
    BertModel(config).save_pretrained(folder)
    return folder


def bin_copy(source: Path, folder: Path) -> Path:
    """A copy of a saved model whose weights are only ``pytorch_model.bin`` (transformers 5
    always writes safetensors, so the state dict is written with ``torch.save``)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors*"))
    state: dict = {}
    for file in sorted(source.glob("*.safetensors")):
        state |= load_file(file)
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def bin_only(folder: Path) -> Path:
    """A tiny BERT whose weights are only ``pytorch_model.bin``."""
    tiny = tiny_bert(folder.with_name(folder.name + "-safetensors"))
    return bin_copy(tiny, folder)


def big_bert(folder: Path, vocab: int = 16000, hidden: int = 1024, intermediate: int = 8192,
             layers: int = 4, dtype: str = "float32") -> Path:
    """A BERT whose non-embedding part dwarfs its embeddings (defaults: 62.5 MiB of word
    embeddings as float32, about 390 MiB of weights in all), for the peak-memory check.

    Only the word embeddings are random: the other weights are left uninitialised (fast), as
    their values do not matter for reading the embeddings."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokens = wordpiece_vocab()
    tokens += [f"tok{i}" for i in range(vocab - len(tokens))]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(folder)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=16, intermediate_size=intermediate,
                        max_position_embeddings=64)
    config.save_pretrained(folder)
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in BertModel(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    kind = getattr(torch, dtype)
    state = {n: torch.empty(shape, dtype=kind) for n, shape in shapes.items()}
    state["embeddings.word_embeddings.weight"] = torch.randn(
        vocab, hidden, generator=generator).to(kind)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


# --- a model with under-trained rows (job/undertrained.py) -----------------------------------

def trained_like_matrix(n: int, dims: int, seed: int = 0) -> object:
    """Rows shaped like trained embeddings: a shared offset, a low-rank part that carries
    the "meaning", uneven norms around 1, a little noise (float32)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6)) @ rng.standard_normal((6, dims)) / np.sqrt(6 * dims)
    offset = rng.standard_normal(dims) / np.sqrt(dims) * 0.5
    rows = offset + 2.0 * latent + rng.normal(0, 0.05, (n, dims))
    return (rows * rng.uniform(0.8, 1.3, (n, 1))).astype(np.float32)


def planted_bert(folder: Path, unused: int = 20, words: int = 400, planted: int = 30,
                 hidden: int = 32, seed: int = 0) -> tuple[Path, list[int]]:
    """A BERT whose input embeddings look trained, except two kinds of under-trained rows:
    ``[unused0..]`` placeholders that drifted together into one direction (as never-seen
    rows of a tied model do), and ``planted`` ordinary word rows (``tok<i>``) left at their
    random initialisation, N(0, 0.02) as BERT's ``initializer_range``. Returns the folder
    and the planted ids."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(unused)]
    vocab += [t for t in wordpiece_vocab(words) if t != "[PAD]"]
    vocab = list(dict.fromkeys(vocab))
    tiny_bert_from_vocab(folder, vocab, hidden, seed)
    rng = np.random.default_rng(seed + 1)
    matrix = trained_like_matrix(len(vocab), hidden, seed)
    direction = rng.standard_normal(hidden)
    direction /= np.linalg.norm(direction)
    matrix[1:1 + unused] = 0.3 * direction + rng.normal(0, 0.03, (unused, hidden))
    pool = [i for i, t in enumerate(vocab) if t.startswith("tok")]
    ids = sorted(int(i) for i in rng.choice(pool, planted, replace=False))
    matrix[ids] = rng.normal(0, 0.02, (planted, hidden))
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    tensors[key] = matrix.astype(tensors[key].dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return folder, ids


def tiny_bert_from_vocab(folder: Path, vocab: list[str], hidden: int = 32, seed: int = 0,
                         ) -> Path:
    """A random 2-layer BERT with exactly this WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder
