"""Training: TrainConfig, the loop (AMP, DDP, exact resume), launch() for local processes, and the llm-train CLI.

    $ llm-train --preset shakespeare-char-cpu corpus=shakespeare out_dir=out max_iters=500
    $ llm-train --resume out max_iters=2000             # continue the same run
    $ torchrun --nproc_per_node=2 -m engine.train --preset shakespeare-char-cpu out_dir=out

From Python (the app runs this in spawned processes, see launch())::

    problems({"n_embd": 130, "n_head": 4})   # -> ["width n_embd=130 does not split evenly ..."]; [] when it can start
    finished = train(TrainConfig(corpus="shakespeare", out_dir="out", max_iters=100), emit=print)
    finished.outcome                          # Outcome.COMPLETED | STOPPED | DIVERGED (engine.messages)

Fine-tuning and other model families::

    $ llm-train init_from=openai-community/gpt2 corpus=my.txt out_dir=ft max_iters=200   # HF cache, folder or ckpt
    $ llm-train --preset llama-char-cpu out_dir=llama      # a Llama-style model from scratch (RMSNorm, SwiGLU, RoPE)

The package's modules:

- :mod:`engine.train.config`: TrainConfig and problems() (its one validation: the CLI and the app's form call it),
  the learning-rate schedule, load_run_config().
- :mod:`engine.train.source`: open_source(), the model ``init_from`` fine-tunes (a checkpoint, HF folder or hub name).
- :mod:`engine.train.distributed`: the torchrun environment, this rank's device, RNG states as plain data.
- :mod:`engine.train.trainer`: Trainer (the loop) and train().
- :mod:`engine.train.resume`: what a resume reads and checks before the first step.
- :mod:`engine.train.failures`: one readable line per failure (a full disk, a user error); the run's JSON writes.
- :mod:`engine.train.launch`: launch() and LocalRun, the app's local training processes (their body is
  :mod:`engine.worker`, which watches the app and stops an orphaned run).
- :mod:`engine.train.cli`: build_config() and main(), the ``llm-train`` command (also ``python -m engine.train``).

A run folder holds .lock (rank 0 holds it for the whole run: engine.runlock), config.json, metrics.jsonl (the
engine.messages stream as JSON lines) and ckpt.pt, the latest checkpoint: model, optimizer, GradScaler, step, every
rank's RNG states, the data generator, the config and the tokenizer. On the CPU in float32, a resumed run continues
bit for bit like one that never stopped.

Distributed runs read RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from the environment (as torchrun
sets them): gloo on the CPU, NCCL on CUDA. batch_size is the global micro-batch, split evenly over the processes, so
the same config trains the same model whatever the number of processes. Only rank 0 writes files and emits messages.
"""

from engine.train.config import (ALIASES, CKPT_NAME, CONFIG_NAME, DEVICES, METRICS_NAME, MODEL_FIELDS, PRECISIONS,
                                 USER_ERRORS, ConfigError, TrainConfig, get_lr, load_run_config, model_config, problems)
from engine.train.trainer import Trainer, train
from engine.train.launch import LocalRun, launch
from engine.train.cli import ConsolePrinter, build_config, main

__all__ = ["ALIASES", "CKPT_NAME", "CONFIG_NAME", "DEVICES", "METRICS_NAME", "MODEL_FIELDS", "PRECISIONS",
           "USER_ERRORS", "ConfigError", "TrainConfig", "get_lr", "load_run_config", "model_config", "problems",
           "Trainer", "train", "LocalRun", "launch", "ConsolePrinter", "build_config", "main"]
