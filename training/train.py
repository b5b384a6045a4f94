"""`flanforge train`: check everything, then train, checkpoint, resume.

`prepare` does every check that can fail on bad input — manifest, shards, clusters, preset,
tokenizer, model size vs sequence length, batch vs devices, run directory — and the first step
runs under an out-of-memory guard, so a bad input stops the run before any checkpoint exists.
The loop itself is backend-neutral Keras (`train_on_batch`), which lets one checkpoint carry the
model, optimizer and the exact data position.
"""
from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator

from flanforge.schemas.files import is_remote
from flanforge.schemas.manifest import Manifest, ShardInfo
from flanforge.training import checkpoint as ckpt_lib
from flanforge.training.data import (
    Mixture,
    build_mixture,
    check_clusters,
    manifest_collections,
    manifest_mixing_weights,
    mixture_weights,
    open_corpus,
    read_output_shard,
    task_sizes,
    train_shards,
    verify_shard_files,
)
from flanforge.training.devices import Accelerator, DataParallel, detect, use_precision
from flanforge.training.errors import TrainingInputError
from flanforge.training.features import BatchLayout, SequenceLengths, TokenizedExample, TokenizedMixture, make_batch, next_batch
from flanforge.training.model import TINY, LanguageModel, ModelSettings, build_model, resolve_preset
from flanforge.training.tokenizer import Tokenizer, load_tokenizer, train_tiny_tokenizer

TOKENIZER_DIR = "tokenizer"
TINY_TOKENIZER_FILE = "tiny.model"
# Texts the tiny tokenizer learns from: plenty for a 1k vocabulary, bounded for big corpora.
TINY_TOKENIZER_TEXTS = 100_000
# Settings a resumed run must share with the run it continues (--steps may grow).
RESUME_MUST_MATCH = (
    "data", "fmt", "holdout_clusters", "model", "preset", "batch_size", "seq_len_inputs",
    "seq_len_targets", "learning_rate", "mixing", "rate_cap", "temperature", "seed",
)


class BatchTooLargeError(TrainingInputError):
    """The first batch ran out of accelerator memory."""


@dataclass(frozen=True)
class TrainConfig(ModelSettings):
    data: str
    output: str
    fmt: str = "parquet"
    holdout_clusters: tuple[str, ...] = ()
    steps: int = 1000
    learning_rate: float = 1e-4
    mixing: str = "examples_proportional"
    rate_cap: int | None = None  # None: the build's mixing weights as recorded (the manifest's rates)
    temperature: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    verify_sha256: bool = False
    resume: bool = False
    run_eagerly: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise TrainingInputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.learning_rate <= 0:
            raise TrainingInputError("--learning-rate must be positive")
        SequenceLengths(self.seq_len_inputs, self.seq_len_targets)  # raises on lengths that cannot hold an example


@dataclass
class Plan:
    """Everything checked and loaded; training can start."""

    config: TrainConfig
    manifest: Manifest
    shards: list[ShardInfo]
    weights: dict[str, float]
    tokenizer: Tokenizer
    accelerator: Accelerator
    parallel: DataParallel
    precision: str
    lm: LanguageModel
    layout: BatchLayout
    resume_from: ckpt_lib.Checkpoint | None = None


@dataclass
class RunStats:
    """Running totals for logs and metrics.json."""

    losses: list[float] = field(default_factory=list)
    real_tokens: int = 0
    token_slots: int = 0
    target_tokens: int = 0
    truncated: int = 0
    seconds: float = 0.0

    def add(self, batch: Any, loss: float, seconds: float) -> None:
        self.losses.append(loss)
        self.real_tokens += batch.real_tokens
        self.token_slots += batch.token_slots
        self.target_tokens += batch.target_tokens
        self.truncated += batch.truncated
        self.seconds += seconds


def tokenizer_for(config: TrainConfig, manifest: Manifest, shards: list[ShardInfo]) -> Tokenizer:
    """--tokenizer, else the preset's own vocabulary, else (tiny) one trained on the training shards.

    The file is copied into the run directory so evaluation needs only the run directory.
    """
    if config.resume:
        return load_tokenizer(os.path.join(config.output, ckpt_lib.read_run(config.output)["tokenizer"]))
    tok_dir = os.path.join(config.output, TOKENIZER_DIR)
    if config.tokenizer or config.preset != TINY:
        source = config.tokenizer or config.preset
        if is_remote(source):
            raise TrainingInputError(f"--preset {source} is remote: pass its vocabulary file with --tokenizer")
        tok = load_tokenizer(source)
        os.makedirs(tok_dir, exist_ok=True)
        copy = os.path.join(tok_dir, os.path.basename(tok.path))
        with open(tok.path, "rb") as src, open(copy, "wb") as dst:
            dst.write(src.read())
        return load_tokenizer(copy)
    return train_tiny_tokenizer(corpus_texts(manifest, shards), os.path.join(tok_dir, TINY_TOKENIZER_FILE))


def corpus_texts(manifest: Manifest, shards: list[ShardInfo], limit: int = TINY_TOKENIZER_TEXTS) -> Iterator[str]:
    """Inputs and targets of the training shards, in shard order, at most `limit` texts."""
    n = 0
    for s in sorted(shards, key=lambda s: s.path):
        table = read_output_shard(manifest, s, ["inputs", "targets"])
        for text in table.column("inputs").to_pylist() + table.column("targets").to_pylist():
            if n == limit:
                return
            n += 1
            yield text


def check_run_dir(config: TrainConfig) -> ckpt_lib.Checkpoint | None:
    """A fresh run needs a fresh directory; --resume needs the same run's directory and a checkpoint."""
    ckpt_lib.check_local(config.output)
    exists = os.path.isfile(os.path.join(config.output, ckpt_lib.RUN_FILE))
    if not config.resume:
        if exists:
            raise ckpt_lib.RunDirError(f"{config.output} already holds a run: pass --resume to continue it, or choose a new --output")
        return None
    saved = ckpt_lib.read_run(config.output)["config"]
    now = json.loads(json.dumps(asdict(config)))
    changed = [k for k in RESUME_MUST_MATCH if saved.get(k) != now[k]]
    if changed:
        raise ckpt_lib.RunDirError(
            "--resume continues the same run, but these settings differ from it: "
            + ", ".join(f"{k} (was {saved.get(k)!r}, now {now[k]!r})" for k in changed)
        )
    return ckpt_lib.latest_checkpoint(config.output)


def compile_model(lm: LanguageModel, learning_rate: float, run_eagerly: bool) -> None:
    """AdamW on the per-target-token cross entropy (padding and input tokens carry weight 0).

    The loss sums weighted token losses: the step (devices.DataParallel.step_fn) weights each
    target token by its share of the whole batch, which makes the sum the batch's mean however
    the batch is split over devices.
    """
    import keras

    lm.keras_model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
        run_eagerly=run_eagerly,
    )


def build_variables(lm: LanguageModel, layout: BatchLayout, pad_id: int) -> None:
    """Create model and optimizer variables (needed before loading a checkpoint into them)."""
    dummy = make_batch(layout, [TokenizedExample((pad_id,), (pad_id, pad_id))], pad_id)
    lm.keras_model(dummy.x)
    lm.keras_model.optimizer.build(lm.keras_model.trainable_variables)


def load_model(
    settings: dict[str, Any], tok: Tokenizer, parallel: DataParallel, checkpoint: ckpt_lib.Checkpoint | None, *, run_eagerly: bool = False
) -> tuple[LanguageModel, BatchLayout]:
    """Build the model a run describes (seeded, so `checkpoint=None` is the run's untuned start)."""
    import keras

    keras.utils.set_random_seed(settings["seed"])
    lengths = SequenceLengths(settings["seq_len_inputs"], settings["seq_len_targets"])
    with parallel.scope():
        lm = build_model(settings["model"], settings["preset"], tok.vocab_size, lengths.total)
        layout = BatchLayout(settings["model"], lengths, packed=lm.packs)
        compile_model(lm, settings["learning_rate"], run_eagerly)
        build_variables(lm, layout, tok.pad_id)
    if checkpoint is not None:
        lm.keras_model.load_weights(checkpoint.weights)
    return lm, layout


def prepare(config: TrainConfig) -> Plan:
    """Every check and load that can fail on bad input, in order of cost; nothing is trained."""
    config = replace(config, preset=resolve_preset(config.preset))
    manifest = open_corpus(config.data, config.fmt)
    check_clusters(manifest, config.holdout_clusters)
    shards = train_shards(manifest, config.fmt, config.holdout_clusters)
    verify_shard_files(manifest, shards, check_sha256=config.verify_sha256)
    collection_of, collection_weights = manifest_collections(manifest)
    weights = mixture_weights(
        task_sizes(manifest, shards), method=config.mixing, rate_cap=config.rate_cap,
        temperature=config.temperature, explicit=manifest_mixing_weights(manifest),
        collection_of=collection_of, collection_weights=collection_weights,
    )
    resume_from = check_run_dir(config)
    os.makedirs(config.output, exist_ok=True)
    tok = tokenizer_for(config, manifest, shards)
    acc = detect()
    parallel = DataParallel.setup(acc, config.batch_size)
    precision = use_precision(config.precision, acc)
    lm, layout = load_model(asdict(config), tok, parallel, resume_from, run_eagerly=config.run_eagerly)
    return Plan(config, manifest, shards, weights, tok, acc, parallel, precision, lm, layout, resume_from)


def first_step_guard(step: Callable[..., dict], batch_size: int, length: int) -> Callable[..., dict]:
    """Turn an out-of-memory error on the first step into a clear message (later steps have the same shapes)."""

    def guarded(*args: Any) -> dict:
        try:
            return step(*args)
        except Exception as e:
            text = f"{type(e).__name__}: {e}"
            if "RESOURCE_EXHAUSTED" in text or "OutOfMemory" in text or "ResourceExhausted" in text or "out of memory" in text.lower():
                raise BatchTooLargeError(
                    f"a batch of {batch_size} x {length} tokens does not fit in accelerator memory; "
                    "lower --batch-size or --seq-len-inputs/--seq-len-targets"
                ) from e
            raise

    return guarded


def write_run_file(plan: Plan) -> None:
    config = asdict(plan.config)
    ckpt_lib.write_json(
        os.path.join(plan.config.output, ckpt_lib.RUN_FILE),
        {
            "config": config,
            "tokenizer": os.path.relpath(plan.tokenizer.path, plan.config.output),
            "packed": plan.layout.packed,
            "mixture_weights": plan.weights,
            "manifest_root": plan.manifest.root,
            "accelerator": plan.accelerator.describe(),
            "precision": plan.precision,
        },
    )


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) training; returns what metrics.json holds."""
    plan = prepare(config)
    write_run_file(plan)
    log(f"devices: {plan.accelerator.describe()}, precision {plan.precision}")
    log("mixture: " + ", ".join(f"{t} {w:.3f}" for t, w in sorted(plan.weights.items())))
    mixture = build_mixture(plan.manifest, plan.shards, plan.weights, config.seed)
    step = 0
    if plan.resume_from is not None:
        step = plan.resume_from.step
        mixture.restore(plan.resume_from.data_state())
        log(f"resumed from {plan.resume_from.path} (step {step})")
    source = TokenizedMixture(mixture, plan.tokenizer, plan.layout.lengths, eos_on_inputs=plan.layout.eos_on_inputs)
    run_step = plan.parallel.step_fn(plan.lm.keras_model)
    first = first_step_guard(run_step, config.batch_size, plan.layout.lengths.total)
    stats = RunStats()
    from tensorboardX import SummaryWriter

    with SummaryWriter(os.path.join(config.output, "logs"), purge_step=step or None) as writer:
        while step < config.steps:
            batch = next_batch(source, plan.layout, config.batch_size, plan.tokenizer.pad_id)
            t0 = time.perf_counter()
            logs = (first if not stats.losses else run_step)(batch.x, batch.labels, batch.weights)
            step += 1
            stats.add(batch, float(logs["loss"]), time.perf_counter() - t0)
            if step % config.log_every == 0 or step == config.steps:
                log_scalars(writer, step, stats, batch)
                log(step_line(step, config.steps, stats, batch.padding_fraction))
            if step % config.checkpoint_every == 0 or step == config.steps:
                saved = ckpt_lib.save_checkpoint(config.output, step, plan.lm.keras_model, mixture.state(), config.keep_checkpoints)
                log(f"checkpoint: {saved.path}")
    metrics = summarize(plan, stats, mixture, step)
    metrics_path = os.path.join(config.output, "metrics.json")
    ckpt_lib.write_json(metrics_path, metrics)
    log(f"metrics: {metrics_path}; curves: tensorboard --logdir {os.path.join(config.output, 'logs')}")
    return metrics


def step_line(step: int, steps: int, stats: RunStats, padding: float) -> str:
    """`step 160/200: loss 5.09, 4,321 tokens/s, padding 58%, ETA 0:00:12` (rates over the run so far)."""
    per_step = stats.seconds / max(len(stats.losses), 1)
    eta = datetime.timedelta(seconds=round(per_step * (steps - step)))
    rate = stats.real_tokens / stats.seconds if stats.seconds else 0.0
    return f"step {step}/{steps}: loss {stats.losses[-1]:.4f}, {rate:,.0f} tokens/s, padding {padding:.1%}, ETA {eta}"


def log_scalars(writer: Any, step: int, stats: RunStats, batch: Any) -> None:
    writer.add_scalar("train/loss", stats.losses[-1], step)
    writer.add_scalar("train/padding_fraction", batch.padding_fraction, step)
    writer.add_scalar("train/tokens_per_second", stats.real_tokens / max(stats.seconds, 1e-9), step)


def summarize(plan: Plan, stats: RunStats, mixture: Mixture, step: int) -> dict[str, Any]:
    """metrics.json: where the run ended, the loss, throughput, padding, and the mixture actually drawn."""
    n = max(len(stats.losses), 1)
    return {
        "step": step,
        "steps_this_session": len(stats.losses),
        "loss_first": stats.losses[0] if stats.losses else None,
        "loss_final": stats.losses[-1] if stats.losses else None,
        "loss_mean_last_10": sum(stats.losses[-10:]) / min(n, 10) if stats.losses else None,
        "examples_drawn": mixture.drawn,
        "examples_by_task": dict(sorted(mixture.drawn_by_task.items())),
        "mixture_weights": plan.weights,
        "tokens": stats.real_tokens,
        "target_tokens": stats.target_tokens,
        "padding_fraction": 1 - stats.real_tokens / stats.token_slots if stats.token_slots else None,
        "truncated_examples": stats.truncated,
        "packed": plan.layout.packed,
        "tokens_per_second": stats.real_tokens / stats.seconds if stats.seconds else None,
        "accelerator": plan.accelerator.describe(),
        "precision": plan.precision,
        "config": asdict(plan.config),
    }
