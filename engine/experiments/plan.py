"""The A/B experiments: which setting each one varies, its arms, and the experiment folder they are written to.

    >>> [arm.name for arm in arms("positions")]
    ['learned', 'rope', 'alibi']
    >>> [(arm.name, arm.world_size) for arm in arms("processes")]
    [('1-process', 1), ('2-processes', 2)]

An experiment folder DIR holds one normal run folder per arm (``DIR/learned``, ...), ``DIR/experiment.json`` (what
was compared, written first, so the app can open an experiment that is still going) and, for positions,
``DIR/extrapolation.csv``. Every arm gets the same settings (data, seed, budget) but the one compared.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.runs import RunFolder
from engine.train.config import ConfigError, TrainConfig

MANIFEST_NAME = "experiment.json"
EXTRAPOLATION_NAME = "extrapolation.csv"
FORMAT = 1


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a name (its folder), the settings it changes, and how many processes train it."""

    name: str
    overrides: dict = field(default_factory=dict)
    world_size: int = 1


EXPERIMENTS = {
    "positions": "learned vs RoPE vs ALiBi position encodings, then validation loss at 1x, 2x and 4x the context",
    "precision": "fp32 vs bf16 autocast (and fp16 with its loss scaler where CUDA exists): speed and loss",
    "processes": "1 vs 2 DDP processes at the same global batch: the same curve, and the time per step of each",
}


def arms(kind: str, cuda: bool = False) -> list[Arm]:
    """The arms of an experiment; fp16 joins precision only with CUDA (its GradScaler is CUDA-only)."""
    if kind == "positions":
        return [Arm(pos, {"pos": pos}) for pos in ("learned", "rope", "alibi")]
    if kind == "precision":
        return [Arm(p, {"precision": p}) for p in ("fp32", "bf16") + (("fp16",) if cuda else ())]
    if kind == "processes":
        return [Arm("1-process", {}, 1), Arm("2-processes", {}, 2)]
    raise ConfigError(f"unknown experiment {kind!r}; known: {', '.join(EXPERIMENTS)}")


@dataclass
class Experiment:
    """An experiment folder: its kind, the base settings and the arms (each with its full config)."""

    kind: str
    path: Path
    base: dict
    arms: list[Arm]

    def arm_dir(self, arm: Arm) -> Path:
        return self.path / arm.name

    def config(self, arm: Arm) -> TrainConfig:
        return TrainConfig.from_dict({**self.base, **arm.overrides, "out_dir": str(self.arm_dir(arm)),
                                      "resume": False})

    @property
    def extrapolation_path(self) -> Path:
        return self.path / EXTRAPOLATION_NAME

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def to_dict(self) -> dict:
        return {"format": FORMAT, "experiment": self.kind, "base": self.base,
                "arms": [{"name": a.name, "overrides": a.overrides, "world_size": a.world_size} for a in self.arms]}

    def write_manifest(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_name("." + MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest_path)


def plan(kind: str, base: TrainConfig, cuda: bool = False, gpus: int = 0) -> Experiment:
    """The experiment ``kind`` over base (its out_dir is the experiment folder); ConfigError if an arm cannot run or
    the folder already holds a run."""
    if base.device == "cuda" and not cuda:  # else every arm would start, fail the same way, and leave a folder
        raise ConfigError("device cuda needs a CUDA GPU, and this machine has none")
    chosen = arms(kind, cuda)
    settings = base.to_dict()
    settings.pop("resume", None)
    if kind == "processes":
        if base.batch_size % 2:
            raise ConfigError(f"the processes experiment splits batch_size over 2 processes; batch_size "
                              f"{base.batch_size} is odd: use an even one")
        if base.device == "cuda" and gpus < 2 or base.device == "auto" and cuda and gpus < 2:
            settings["device"] = "cpu"  # two ranks cannot share one GPU under NCCL; the comparison runs on the CPU
    if kind == "precision" and base.device == "cpu":
        chosen = [a for a in chosen if a.name != "fp16"]
    experiment = Experiment(kind=kind, path=Path(base.out_dir), base=settings, arms=chosen)
    for arm in chosen:
        experiment.config(arm)  # every arm's settings are checked before anything starts
        if RunFolder(experiment.arm_dir(arm)).has_checkpoint():
            raise ConfigError(f"{experiment.arm_dir(arm)} already holds a run; choose another out_dir for the "
                              f"experiment")
    return experiment


def read_experiment(path) -> Experiment:
    """The experiment in folder path, from its experiment.json; ConfigError if it is not one."""
    path = Path(path)
    manifest = path / MANIFEST_NAME
    try:
        d = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} is not an experiment folder (no {MANIFEST_NAME})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"cannot read {manifest}: {e}") from None
    try:
        kind = d["experiment"]
        arm_list = [Arm(str(a["name"]), dict(a.get("overrides", {})), int(a.get("world_size", 1))) for a in d["arms"]]
        base = dict(d["base"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{manifest} is not a valid experiment description ({type(e).__name__}: {e})") from None
    if kind not in EXPERIMENTS or any(os.sep in a.name or a.name in ("", ".", "..") for a in arm_list):
        raise ConfigError(f"{manifest} is not a valid experiment description")
    return Experiment(kind=kind, path=path, base=base, arms=arm_list)
