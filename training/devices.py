"""What hardware the Keras backend sees, and how to spread a batch over it.

One place decides: the device kind and count (printed by the trainer and the benchmark),
bf16 where the hardware has fast bf16 (TPU, NVIDIA compute capability >= 8), and data parallelism
across every local device — keras.distribution on JAX, a tf.distribute strategy on TensorFlow
(TPUStrategy when a TPU is attached, else MirroredStrategy over the GPUs or logical CPU devices).
PyTorch runs on one device. Whatever the split, the loss is the mean over the whole batch's
target tokens (`token_shares`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from flanforge.training.errors import TrainingInputError

PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class Accelerator:
    backend: str  # jax | tensorflow | torch
    platform: str  # cpu | gpu | tpu
    count: int
    name: str
    bf16: bool

    def describe(self) -> str:
        return f"{self.count} x {self.name} ({self.platform}, keras backend {self.backend})"


def detect() -> Accelerator:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return _detect_jax()
    if backend == "torch":
        return _detect_torch()
    return _detect_tf()


def _detect_jax() -> Accelerator:
    import jax

    devices = jax.devices()
    d = devices[0]
    bf16 = d.platform == "tpu" or (d.platform == "gpu" and _cuda_capability_at_least_8(getattr(d, "compute_capability", "0")))
    return Accelerator("jax", d.platform, len(devices), d.device_kind, bf16)


def _detect_torch() -> Accelerator:
    import torch

    if torch.cuda.is_available():
        return Accelerator("torch", "gpu", torch.cuda.device_count(), torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported())
    return Accelerator("torch", "cpu", 1, "cpu", False)


def _detect_tf() -> Accelerator:
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return Accelerator("tensorflow", "tpu", len(tf.config.list_logical_devices("TPU")), "TPU", True)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = ".".join(map(str, details.get("compute_capability", (0, 0))))
        return Accelerator("tensorflow", "gpu", len(gpus), details.get("device_name", "GPU"), _cuda_capability_at_least_8(capability))
    # One CPU unless it was split into logical devices (tf.config.set_logical_device_configuration)
    return Accelerator("tensorflow", "cpu", len(tf.config.list_logical_devices("CPU")), "cpu", False)


def _cuda_capability_at_least_8(capability: str) -> bool:
    try:
        return float(capability) >= 8.0
    except ValueError:
        return False


def use_precision(precision: str, acc: Accelerator) -> str:
    """Set Keras' global dtype policy; returns the policy name used."""
    import keras

    if precision not in PRECISIONS:
        raise TrainingInputError(f"--precision {precision}: choose from {', '.join(PRECISIONS)}")
    bf16 = precision == "bfloat16" or (precision == "auto" and acc.bf16)
    policy = "mixed_bfloat16" if bf16 else "float32"
    keras.config.set_dtype_policy(policy)
    return policy


@dataclass
class DataParallel:
    """The scope to build the model in, and how to run one training step, for this backend."""

    acc: Accelerator
    strategy: Any = None  # a tf.distribute.Strategy on TensorFlow with several devices

    @classmethod
    def setup(cls, acc: Accelerator, batch_size: int) -> "DataParallel":
        if acc.count > 1 and batch_size % acc.count:
            raise TrainingInputError(
                f"--batch-size {batch_size} does not split evenly over {acc.count} {acc.platform} devices; "
                f"use a multiple of {acc.count}"
            )
        if acc.count > 1 and acc.backend == "jax":
            import keras

            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
        if acc.count > 1 and acc.backend == "tensorflow":
            import tensorflow as tf

            if acc.platform == "tpu":
                resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
                return cls(acc, tf.distribute.TPUStrategy(resolver))
            return cls(acc, _mirrored_strategy(tuple(d.name for d in tf.config.list_logical_devices(acc.platform.upper()))))
        return cls(acc)

    def scope(self) -> Any:
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def step_fn(self, model: Any) -> Callable[[dict, Any, Any], dict[str, float]]:
        """(x, labels, target mask) -> logs, with the loss the mean over the batch's target tokens.

        The mask becomes each target token's share of the whole batch (mask / its sum) and the
        model's loss sums (`reduction="sum"`, train.compile_model), so the loss and its gradient do
        not depend on how the batch is split. Keras' own mean (`mean_with_sample_weight`) divides
        each replica's sum by that replica's token count, and a tf.distribute step then averages
        the replicas' means: with unequal target counts per slice that is not the batch's mean,
        and the run drifts away from the single-device one.
        """
        if self.strategy is None:
            return lambda x, y, mask: model.train_on_batch(x, y, token_shares(mask), return_dict=True)
        import tensorflow as tf

        model.make_train_function()

        def run(x: dict, y: Any, mask: Any) -> dict[str, float]:
            # Keras' own distributed step on a one-batch dataset that the strategy splits over replicas.
            # Its metrics (the loss tracker) are reset first, as train_on_batch does: otherwise the
            # logged loss would be the mean of every step so far.
            model.reset_metrics()
            dataset = self.strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, y, token_shares(mask))))
            logs = model.train_function(iter(dataset))
            return {k: float(v) for k, v in logs.items()}

        return run


@functools.cache
def _mirrored_strategy(devices: tuple[str, ...]) -> Any:
    """One MirroredStrategy per device set and process.

    The devices are named because MirroredStrategy() alone takes only the GPUs, or a single CPU.
    It is kept because a second strategy over the same devices (a second run in one process)
    reuses the first one's collective instance keys, and its all-reduce then fails with a shape
    mismatch between the two models' gradients.
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


def token_shares(mask: np.ndarray) -> np.ndarray:
    """Loss weights that sum to 1 over the batch: 1/(target tokens) on each target token, 0 elsewhere."""
    return (mask / max(float(mask.sum()), 1.0)).astype(np.float32)
