"""Training steps with dropout on the CPU: engine.dropout's masks against torch's own, alternately in one process.

    python bench/bench_dropout.py                 # nanoGPT's CPU config with dropout 0.2, and its GPU config (batch 8)
    python bench/bench_dropout.py --steps 10 --rounds 2

Each arm is a training step as the trainer takes it (forward, backward, AdamW) of our GPT with dropout 0.2, in fp32
and in bf16 autocast. "torch" is the same model with torch's dropout: nn.Dropout modules, and attention through
SDPA with dropout_p (engine.model.drops_weights_itself says no; on the CPU SDPA then forms the weights explicitly
and draws its mask with bernoulli_). Arms
alternate, A B B A, so whatever else the machine does falls on both; the first steps of each arm are left out.
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import engine.model  # noqa: E402
from engine.dropout import Dropout  # noqa: E402
from engine.model import GPT, GPTConfig  # noqa: E402

SHAPES = {  # name -> (model config, batch)
    "CPU config (4 x 128, context 64, batch 12)": (dict(n_layer=4, n_head=4, n_embd=128, block_size=64), 12),
    "GPU config (6 x 384, context 256, batch 8)": (dict(n_layer=6, n_head=6, n_embd=384, block_size=256), 8),
}
WARMUP = 2


def with_torch_dropout(model: GPT) -> GPT:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Dropout):
                setattr(module, name, torch.nn.Dropout(child.p))
    return model


def step_times(model, optimizer, x, y, precision: str, steps: int, ours: bool) -> list[float]:
    saved = engine.model.drops_weights_itself
    if not ours:
        engine.model.drops_weights_itself = lambda q: False
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    times = []
    try:
        for _ in range(WARMUP + steps):
            t0 = time.perf_counter()
            with context:
                _, loss = model(x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
    finally:
        engine.model.drops_weights_itself = saved
    return times[WARMUP:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per arm and round (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="A B B A rounds (default 2)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; dropout 0.2; median ms per training step")
    for name, (shape, batch) in SHAPES.items():
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            config = GPTConfig(vocab_size=65, dropout=0.2, bias=False, **shape)
            arms = {"ours": GPT(config), "torch": with_torch_dropout(GPT(config))}
            arms["torch"].load_state_dict(arms["ours"].state_dict())
            optimizers = {arm: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for arm, m in arms.items()}
            x = torch.randint(0, 65, (batch, config.block_size))
            y = torch.randint(0, 65, (batch, config.block_size))
            times: dict[str, list[float]] = {"ours": [], "torch": []}
            for n in range(args.rounds):
                for arm in (("torch", "ours") if n % 2 == 0 else ("ours", "torch")):
                    times[arm] += step_times(arms[arm].train(), optimizers[arm], x, y, precision, args.steps,
                                             arm == "ours")
            ms = {arm: 1000 * statistics.median(t) for arm, t in times.items()}
            print(f"  {name}, {precision}: torch {ms['torch']:7.1f}, ours {ms['ours']:7.1f} "
                  f"= {ms['ours'] / ms['torch']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
