"""TensorFlow data parallelism trains exactly like one device.

The same run (corpus, seed, batches) trains in this process on one CPU and in a child process on
two logical CPU devices, where the trainer builds a MirroredStrategy and each replica gets half of
every batch. Stated tolerances: every logged loss within 1e-3 of the one-device run, and the mean
absolute difference of the final weights at most 1e-6. Observed: equal losses to the 4 logged
decimals and mean weight differences under 1e-7 (float32 all-reduce order; AdamW turns that noise
into up to ~1e-3 on a few weights whose gradients nearly cancel, such as T5's relative position
biases, so the maximum is not a useful bound). Before the fix the losses were off by 0.03-0.17
from step 2 on and the mean weight difference was 5e-4 (each replica averaged its own target
tokens, and the logged loss was a running mean).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from flanforge.training import checkpoint as ckpt_lib
from flanforge.training.train import TrainConfig, train

LOSS_TOLERANCE = 1e-3
MEAN_WEIGHT_TOLERANCE = 1e-6
RUN = dict(steps=3, batch_size=4, seq_len_inputs=48, seq_len_targets=16, learning_rate=3e-3, log_every=1,
           checkpoint_every=3, precision="float32")
MODELS = ("t5", "causal_lm")

TWO_DEVICES = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from flanforge.training.train import TrainConfig, train

    corpus, out, run = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    logs = {}
    for model in run.pop("models"):
        logs[model] = []
        train(TrainConfig(data=corpus, output=f"{out}/{model}", model=model, **run), log=logs[model].append)
    print(json.dumps(logs))
    """
)


def _losses(lines: list[str]) -> list[float]:
    return [float(m.group(1)) for line in lines if (m := re.match(r"step \d+/\d+: loss ([\d.]+)", line))]


def _model_weights(run_dir: Path) -> np.ndarray:
    """Every model weight of the run's latest checkpoint (not the optimizer's), flattened in name order."""
    found: dict[str, np.ndarray] = {}
    with h5py.File(ckpt_lib.latest_checkpoint(str(run_dir)).weights) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return np.concatenate([found[k].ravel() for k in sorted(found) if not k.startswith("optimizer/")]).astype(np.float64)


@pytest.fixture(scope="module")
def two_device_runs(corpus: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    out = tmp_path_factory.mktemp("two_devices")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICES, corpus, str(out), json.dumps({**RUN, "models": list(MODELS)})],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", MODELS)
def test_two_cpu_devices_train_like_one(model: str, corpus: str, tmp_path: Path, two_device_runs) -> None:
    two_dir, two_logs = two_device_runs
    one_log: list[str] = []
    train(TrainConfig(data=corpus, output=str(tmp_path / "one"), model=model, **RUN), log=one_log.append)

    assert one_log[0].startswith("devices: 1 x cpu")
    assert two_logs[model][0].startswith("devices: 2 x cpu")  # the MirroredStrategy path really ran
    one, two = _losses(one_log), _losses(two_logs[model])
    assert len(one) == len(two) == RUN["steps"]
    np.testing.assert_allclose(two, one, rtol=0, atol=LOSS_TOLERANCE)
    assert one[-1] < one[0]  # it trained

    one_weights, two_weights = _model_weights(tmp_path / "one"), _model_weights(two_dir / model)
    assert one_weights.shape == two_weights.shape and one_weights.size > 10_000
    assert np.mean(np.abs(two_weights - one_weights)) <= MEAN_WEIGHT_TOLERANCE
