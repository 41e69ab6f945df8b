"""Validation loss of a trained run at 1x, 2x and 4x its training context: does the position encoding extrapolate?

Each arm's checkpoint is run on the same validation windows (same corpus, tokenizer and seed, hence the same offsets)
of each length. A model that refuses a length (learned positions past their table raise ValueError) gets no loss:
the refusal is what the model did when asked, not a rule written here.

    >>> rows = measure("exp/rope", multiples=(1, 2, 4))          # doctest: +SKIP
    >>> [(r.context, r.refused) for r in rows]                   # doctest: +SKIP
    [(64, ''), (128, ''), (256, '')]
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

MULTIPLES = (1, 2, 4)
MIN_BATCHES = 20  # a tiny preset evaluates 5 batches while training: too few to compare lengths by
SEED = 4242  # the windows' offsets: the same for every arm
HEADER = ["arm", "context", "val_loss"]


@dataclass(frozen=True)
class Row:
    arm: str
    context: int
    val_loss: float = math.nan  # NaN when the model could not run this long (see refused)
    refused: str = ""  # the model's own message when it refused


def measure(run_dir, multiples=MULTIPLES, batches: int = 0, batch_size: int = 0, arm: str | None = None,
            device: str = "cpu", should_stop=None) -> list[Row]:
    """Mean validation loss of run_dir's checkpoint at each multiple of its block_size.

    batches / batch_size: windows evaluated per length (default: the run's eval_iters, at least MIN_BATCHES, and
    batch_size). A validation split too short for a length raises DataError (which names the length needed).
    """
    import torch

    from engine.checkpoint import load_model
    from engine.data import get_batch, load_text, prepare
    from engine.runs import RunFolder

    folder = RunFolder(run_dir)
    model, tokenizer, _ = load_model(folder.checkpoint_path, device=device)
    config = json.loads(folder.config_path.read_text(encoding="utf-8"))
    block = model.config.block_size
    batches = batches or max(int(config.get("eval_iters", MIN_BATCHES)), MIN_BATCHES)
    batch_size = batch_size or int(config.get("batch_size", 12))
    longest = block * max(multiples)
    data = prepare(load_text(config["corpus"]), tokenizer, block_size=longest,
                   val_fraction=float(config.get("val_fraction", 0.1)), cache_dir=config.get("cache_dir") or None,
                   name=f"corpus {config['corpus']!r}")
    name = arm or folder.path.name
    rows: list[Row] = []
    model.eval()
    for m in multiples:
        context = block * m
        g = torch.Generator().manual_seed(SEED + context)
        total, refused = 0.0, ""
        with torch.no_grad():
            for _ in range(batches):
                if should_stop is not None and should_stop():
                    return rows
                x, y = get_batch(data.val, batch_size, context, g, device=device)
                try:
                    _, loss = model(x, y)
                except ValueError as e:  # the model's refusal (learned positions past block_size)
                    refused = str(e).splitlines()[0]
                    break
                total += float(loss)
        rows.append(Row(name, context, math.nan if refused else total / batches, refused))
    return rows


def write_csv(path, rows: list[Row]) -> None:
    """arm,context,val_loss; an empty val_loss where the arm could not run that long."""
    path = Path(path)
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for r in rows:
            writer.writerow([r.arm, r.context, "" if math.isnan(r.val_loss) else f"{r.val_loss:.6f}"])
    tmp.replace(path)


def read_csv(path) -> list[Row]:
    """The rows of an extrapolation.csv; ValueError naming the file for one that is not."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            if next(reader, None) != HEADER:
                raise ValueError(f"{path}: expected the header {','.join(HEADER)}")
            for line in reader:
                if not line:
                    continue
                arm, context, loss = line
                rows.append(Row(arm, int(context), float(loss) if loss else math.nan))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: {e}") from None
    except ValueError as e:
        raise ValueError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    return rows


def table(rows: list[Row]) -> tuple[list[str], list[int], dict]:
    """(arms in order, contexts in order, {(arm, context): loss}) for showing rows as an arm x context table."""
    arms, contexts, cells = [], [], {}
    for r in rows:
        if r.arm not in arms:
            arms.append(r.arm)
        if r.context not in contexts:
            contexts.append(r.context)
        cells[(r.arm, r.context)] = r.val_loss
    return arms, sorted(contexts), cells
