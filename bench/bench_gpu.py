"""Training on a GPU, in one short prepared call: GPT-2-small shape against nanoGPT, fp16 + GradScaler, 2-process NCCL.

    python bench/bench_gpu.py --nanogpt path/to/nanoGPT      # on a machine with a CUDA GPU, ~5-8 minutes
    python bench/bench_gpu.py --smoke --nanogpt path/to/nanoGPT   # the same steps on the CPU at a tiny shape

What it runs, each as the process a user starts, one after another:
1. the matmul peak of this GPU in bf16, fp16 and fp32 (engine.flops, large square matmuls), for MFU;
2. GPT-2-small's shape (12 layers, 12 heads, 768 wide, context 1024, batch 12, no grad accumulation, dropout 0),
   bf16 autocast, fused AdamW, torch.compile: `llm-train` and nanoGPT's `train.py` with the same settings on the
   same tokens (the built-in Shakespeare corpus in GPT-2's encoding; nanoGPT gets it as its train.bin / val.bin),
   alternating ours, nanoGPT, ours, nanoGPT. Reported: ms/iter and tokens/s after the compile iterations, and MFU
   of both against the peak measured in step 1 (nanoGPT's own MFU line assumes an A100's 312 TFLOP/s);
3. our fp16 path: autocast + GradScaler, a short run; it must end with finite losses, and its scale and skipped
   steps are printed;
4. two processes with NCCL under torchrun at the same global batch (on one GPU when only one is there: NCCL may
   refuse two ranks on one device, and then the refusal is what gets printed).
Nothing of nanoGPT is kept: its checkout is copied to a temporary folder.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.data import load_text  # noqa: E402
from engine.flops import human_flops, matmul_peak  # noqa: E402
from engine.messages import Failed, Finished, Started, Step, read_jsonl  # noqa: E402
from engine.tokenizers import get_tokenizer  # noqa: E402

SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "batch_size": 12}
SMOKE = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "batch_size": 4}
SKIP = 10  # the first iterations (compile, autotuning, allocator) are left out


def run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    print("  $", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=timeout)


def last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def ours(args, tmp: Path, name: str, precision: str, compile_: bool, torchrun: int = 0) -> dict:
    """One `llm-train` run -> its Started and Step messages (from metrics.jsonl) or the line it failed with."""
    out = tmp / name
    settings = [f"{k}={v}" for k, v in args.shape.items()] + [
        "corpus=shakespeare", "tokenizer=gpt2", "dropout=0.0", "bias=False", f"device={args.device}",
        f"precision={precision}", f"compile={compile_}", f"max_iters={args.iters}", f"lr_decay_iters={args.iters}",
        "warmup_iters=10", "log_interval=1", f"eval_interval={10 * args.iters}", "eval_iters=1", "sample_len=0",
        "checkpoint_interval=0", f"out_dir={out}"]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "engine.train", *settings]
    else:
        cmd = [sys.executable, "-m", "engine.train", *settings]
    t0 = time.perf_counter()
    done = run(cmd, ROOT)
    wall = time.perf_counter() - t0
    msgs = read_jsonl(out / "metrics.jsonl", 0)[0] if (out / "metrics.jsonl").exists() else []
    shutil.rmtree(out, ignore_errors=True)
    failed = [m for m in msgs if isinstance(m, Failed)]
    if done.returncode or failed or not any(isinstance(m, Finished) for m in msgs):
        return {"error": failed[0].error if failed else last_line(done), "wall": wall}
    return {"started": next(m for m in msgs if isinstance(m, Started)),
            "steps": [m for m in msgs if isinstance(m, Step)], "wall": wall}


def prepare_nanogpt(checkout: Path, tmp: Path) -> Path:
    """nanoGPT's code copied into tmp, with data/bench/{train,val}.bin: the built-in corpus in GPT-2's ids."""
    if not (checkout / "train.py").is_file() or not (checkout / "model.py").is_file():
        raise SystemExit(f"{checkout} is not a nanoGPT checkout (no train.py / model.py)")
    work = tmp / "nanogpt"
    shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git", "*.bin", "*.pkl", "out*"))
    ids = np.array(get_tokenizer("gpt2").encode(load_text("shakespeare")), dtype=np.uint16)
    data = work / "data" / "bench"
    data.mkdir(parents=True)
    cut = int(0.9 * len(ids))  # the split nanoGPT's prepare scripts make
    ids[:cut].tofile(data / "train.bin")
    ids[cut:].tofile(data / "val.bin")
    return work


def nanogpt(args, work: Path, n: int) -> dict:
    """nanoGPT's train.py with the same settings -> ms per iteration as it logs them."""
    dtype = {"bf16": "bfloat16", "fp32": "float32"}[args.precision]
    cmd = [sys.executable, "train.py", "--dataset=bench", f"--device={args.device}", f"--compile={args.compile}",
           f"--dtype={dtype}", "--gradient_accumulation_steps=1", "--dropout=0.0", "--bias=False",
           f"--max_iters={args.iters}", f"--lr_decay_iters={args.iters}", "--warmup_iters=10", "--log_interval=1",
           f"--eval_interval={10 * args.iters}", "--eval_iters=1", "--always_save_checkpoint=False",
           "--wandb_log=False", f"--out_dir=out-{n}", *[f"--{k}={v}" for k, v in args.shape.items()]]
    t0 = time.perf_counter()
    done = run(cmd, work)
    wall = time.perf_counter() - t0
    if done.returncode:
        return {"error": last_line(done), "wall": wall}
    ms = [float(x) for x in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", done.stdout, re.M)]
    return {"ms": ms[1:], "wall": wall}  # iter 0 includes the first evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nanogpt", type=Path, help="a checkout of github.com/karpathy/nanoGPT to run beside ours")
    parser.add_argument("--iters", type=int, default=40, help="iterations per run (default 40, the first 10 skipped)")
    parser.add_argument("--rounds", type=int, default=1, help="ours/nanoGPT pairs (default 1)")
    parser.add_argument("--smoke", action="store_true", help="a tiny shape on the CPU, fp32, no compile: checks the "
                        "script itself on a machine without a GPU")
    args = parser.parse_args(argv)
    args.device = "cpu" if args.smoke else "cuda"
    args.shape = SMOKE if args.smoke else SHAPE
    args.precision = "fp32" if args.smoke else "bf16"
    args.compile = not args.smoke
    if not args.smoke and not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here (use --smoke to check the script on the CPU)", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (smoke)"
    print(f"{time.strftime('%Y-%m-%d')}: {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.cuda.device_count() if args.device == 'cuda' else 0} GPU(s)")

    peaks = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        if args.device == "cpu" and name == "fp16":
            continue
        peaks[name] = matmul_peak(args.device, dtype)
        print(f"matmul peak {name}: {human_flops(peaks[name])}", flush=True)
    if args.device == "cuda":
        torch.cuda.empty_cache()

    tokens_per_iter = args.shape["batch_size"] * args.shape["block_size"]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as name:
        tmp = Path(name)
        work = prepare_nanogpt(args.nanogpt, tmp) if args.nanogpt else None
        print(f"\n[2] {args.shape}, {args.precision}, compile={args.compile}, fused AdamW, "
              f"{tokens_per_iter} tokens per iteration", flush=True)
        mine: list[float] = []
        theirs: list[float] = []
        flops_per_token = 0.0
        for n in range(args.rounds):
            a = ours(args, tmp, f"ours-{n}", args.precision, args.compile)
            if "error" in a:
                print(f"  ours failed: {a['error']}")
                return 1
            flops_per_token = a["started"].flops_per_token
            times = [m.time for m in a["steps"]]
            mine += [1000 * (t1 - t0) for t0, t1 in zip(times, times[1:])][SKIP:]
            print(f"  ours: {statistics.median(mine):.1f} ms/iter, run wall {a['wall']:.0f} s (compile included)",
                  flush=True)
            if work:
                b = nanogpt(args, work, n)
                if "error" in b:
                    print(f"  nanoGPT failed: {b['error']}")
                    work = None
                else:
                    theirs += b["ms"][SKIP:]
                    print(f"  nanoGPT: {statistics.median(theirs):.1f} ms/iter, run wall {b['wall']:.0f} s",
                          flush=True)
        peak = peaks[args.precision]

        def line(who: str, ms: list[float]) -> str:
            tps = tokens_per_iter / (statistics.median(ms) / 1000)
            return (f"  {who:8} {statistics.median(ms):8.1f} ms/iter {tps:>12,.0f} tokens/s   "
                    f"MFU {100 * tps * flops_per_token / peak:5.1f}% of {human_flops(peak)}")

        print(line("ours", mine))
        if theirs:
            print(line("nanoGPT", theirs))
            print(f"  ours / nanoGPT time per iteration: {statistics.median(mine) / statistics.median(theirs):.3f}x")

        if args.device == "cuda":
            print("\n[3] fp16 autocast + GradScaler, no compile", flush=True)
            c = ours(args, tmp, "fp16", "fp16", False)
            if "error" in c:
                print(f"  fp16 failed: {c['error']}")
            else:
                steps = c["steps"]
                finite = all(s.loss == s.loss and abs(s.loss) != float("inf") for s in steps)
                print(f"  {len(steps)} steps, losses {'all finite' if finite else 'NOT FINITE'}, "
                      f"{steps[0].loss:.3f} -> {steps[-1].loss:.3f}; GradScaler scale {steps[-1].amp_scale:g}, "
                      f"{steps[-1].skipped_steps} skipped; "
                      f"{statistics.median(s.tokens_per_s for s in steps[SKIP:]):,.0f} tokens/s")

        backend = "NCCL" if args.device == "cuda" else "gloo"
        print(f"\n[4] 2 processes under torchrun ({backend}), global batch {args.shape['batch_size']}", flush=True)
        d = ours(args, tmp, "ddp", args.precision, False, torchrun=2)
        if "error" in d:
            print(f"  2 processes failed: {d['error']}")
        else:
            times = [m.time for m in d["steps"]]
            ms = [1000 * (t1 - t0) for t0, t1 in zip(times, times[1:])][SKIP:]
            print(f"  world size {d['started'].world_size}: {statistics.median(ms):.1f} ms per global step, "
                  f"loss {d['steps'][0].loss:.3f} -> {d['steps'][-1].loss:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
