"""The run directory: what a run was asked to do, and its checkpoints.

RUN_DIR/run.json                  the settings (checked on --resume: a resumed run must be the same run)
RUN_DIR/tokenizer/<file>          the vocabulary, so evaluation needs nothing but the run directory
RUN_DIR/checkpoints/step-NNNNNNNN/model.weights.h5   model and optimizer variables
                                  data_state.json    the mixture's exact position after that step
RUN_DIR/checkpoints/latest        name of the newest complete checkpoint (written last: the commit point)
RUN_DIR/logs/                     TensorBoard event files
RUN_DIR/metrics.json              the final training summary

A checkpoint is written to a temporary directory and renamed into place before `latest` moves,
so a crash mid-save leaves the previous checkpoint as the one a resume picks up.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any

from flanforge.schemas.files import is_remote
from flanforge.training.errors import TrainingInputError

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
WEIGHTS = "model.weights.h5"
DATA_STATE = "data_state.json"


class RunDirError(TrainingInputError):
    """The run directory does not fit the command (clobbering a run, resuming a different one)."""


@dataclass(frozen=True)
class Checkpoint:
    path: str
    step: int

    @property
    def weights(self) -> str:
        return os.path.join(self.path, WEIGHTS)

    def data_state(self) -> dict[str, Any]:
        with open(os.path.join(self.path, DATA_STATE)) as f:
            return json.load(f)


def check_local(run_dir: str) -> None:
    if is_remote(run_dir):
        raise RunDirError(f"--output {run_dir}: the run directory must be a local (or mounted, e.g. gcsfuse) path")


def write_json(path: str, data: Any) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_run(run_dir: str) -> dict[str, Any]:
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir} is not a flanforge run directory (no {RUN_FILE})")
    with open(path) as f:
        return json.load(f)


def latest_checkpoint(run_dir: str) -> Checkpoint | None:
    pointer = os.path.join(run_dir, CHECKPOINTS, LATEST)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.read().strip()
    return Checkpoint(os.path.join(run_dir, CHECKPOINTS, name), int(name.split("-")[1]))


def resolve_checkpoint(path: str) -> tuple[str, Checkpoint]:
    """(run dir, checkpoint) for a run directory (its latest checkpoint) or one checkpoint directory."""
    path = path.rstrip("/")
    if os.path.isfile(os.path.join(path, RUN_FILE)):
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise RunDirError(f"{path} has no finished checkpoint yet")
        return path, ckpt
    if os.path.isfile(os.path.join(path, WEIGHTS)):
        name = os.path.basename(path)
        return os.path.dirname(os.path.dirname(path)), Checkpoint(path, int(name.split("-")[1]))
    raise RunDirError(f"--checkpoint {path}: neither a run directory nor a checkpoint directory")


def save_checkpoint(run_dir: str, step: int, model: Any, data_state: dict[str, Any], keep: int) -> Checkpoint:
    """Save weights (optimizer included) and data position; keep the newest `keep` checkpoints."""
    root = os.path.join(run_dir, CHECKPOINTS)
    name = f"step-{step:08d}"
    final, tmp = os.path.join(root, name), os.path.join(root, name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_weights(os.path.join(tmp, WEIGHTS))
    write_json(os.path.join(tmp, DATA_STATE), data_state)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = os.path.join(root, LATEST)
    with open(pointer + ".tmp", "w") as f:
        f.write(name + "\n")
    os.replace(pointer + ".tmp", pointer)
    finished = sorted(d for d in os.listdir(root) if d.startswith("step-") and not d.endswith(".tmp"))
    for old in finished[:-keep]:
        shutil.rmtree(os.path.join(root, old))
    return Checkpoint(final, step)
