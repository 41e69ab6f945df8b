"""Loading Hugging Face models: time and peak memory against the size of the weights on disk.

    python bench/bench_generation_load.py [--keep DIR]

Writes two models with random weights by transformers' save_pretrained (bf16 safetensors, as these models are
published) into a temporary folder: a SmolLM-135M shape and a Qwen2.5-0.5B shape (151 936-token vocabulary, tied
head). Each is then loaded by engine.load_model in a fresh process, in fp32 and in bf16, alternating, twice each;
the child reports the load time and how far its peak resident memory rose above the resident memory it held just
before the load (torch and the engine imported). Weights are memory-mapped, so the file's pages count while they
are read. Then, as the app's loader does, it lays float32 weights out for decoding (engine.incremental.
lay_out_for_decoding: one weight's copy at a time; nothing in bf16): its time is a column of its own, and the
peak is taken after it.
The machine this runs on may be shared: the load average is printed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

SHAPES = {
    "SmolLM-135M": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 49152,
                    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                    "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 2048,
                    "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
    "Qwen2.5-0.5B": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936,
                     "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
                     "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True},
}

SHORT = {"float32": "fp32", "bfloat16": "bf16"}

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import torch
import engine
torch.set_num_threads(1)
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
before = rss()
t0 = time.perf_counter()
model, tok, info = engine.load_model({path!r}, dtype={dtype!r})
seconds = time.perf_counter() - t0
from engine.incremental import lay_out_for_decoding
t0 = time.perf_counter()
lay_out_for_decoding(model)
layout = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"seconds": seconds, "layout": layout, "peak_rise": peak - before, "params": info["n_params"]}}))
"""


def write_model(folder: str, cfg: dict) -> int:
    """save_pretrained a random model of this shape (bf16) with a small tokenizer; -> bytes of weights on disk."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    import hf_tiny

    config = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
    config.architectures = cfg["architectures"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    hf_tiny.sentencepiece_tokenizer().save(os.path.join(folder, "tokenizer.json"))
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".safetensors"))


def load_in_child(path: str, dtype: str) -> dict:
    code = CHILD.format(root=ROOT, path=path, dtype=dtype)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="write the models here and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="llmp-load-bench-")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (a shared machine: times vary with it)")
    print(f"{'model':<14}{'on disk':>10}{'dtype':>7}{'load s':>8}{'layout s':>10}{'peak rise':>11}{'peak/disk':>11}"
          f"{'weights in memory':>19}")
    try:
        for name, cfg in SHAPES.items():
            folder = os.path.join(root, name)
            t0 = time.perf_counter()
            disk = write_model(folder, cfg) if not os.path.isdir(folder) else sum(
                os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".safetensors"))
            written = time.perf_counter() - t0
            results = {"float32": [], "bfloat16": []}
            for _ in range(2):
                for dtype in results:  # A B A B
                    results[dtype].append(load_in_child(folder, dtype))
            for dtype, runs in results.items():
                best = min(runs, key=lambda r: r["seconds"])
                memory = best["params"] * (4 if dtype == "float32" else 2)
                print(f"{name:<14}{disk / 1e6:>7.0f} MB{SHORT[dtype]:>7}{best['seconds']:>8.2f}{best['layout']:>10.2f}"
                      f"{best['peak_rise'] / 1e6:>8.0f} MB{best['peak_rise'] / disk:>11.2f}{memory / 1e6:>16.0f} MB")
            print(f"  ({name}: written in {written:.0f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
