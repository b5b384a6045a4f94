"""`flanforge train` and `flanforge evaluate` (dispatched here by beam_pipelines/cli.py).

Bad input (missing manifest, shards that differ from it, unknown cluster or preset, a batch that
does not fit) is reported as one line on stderr with exit status 2, before any training.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from typing import Any, Iterator

from flanforge.schemas.manifest import ManifestError
from flanforge.training.errors import TrainingInputError

TRAIN_DESCRIPTION = """\
Train a model on a flanforge build (Parquet shards through pyarrow, or TFRecord through tf.data).

Tasks are mixed as the build recorded them (each task's manifest rate: its collection's weight
shared examples-proportionally, each task's weight capped by the build), optionally tempered;
held-out clusters never reach a training batch, and checkpoints record the model, the optimizer
and the exact data position, so --resume continues with the very next batch.
The Keras backend is chosen the Keras way: KERAS_BACKEND=jax|tensorflow|torch.

examples:
  flanforge train --data out/demo --output runs/tiny --holdout-clusters nli --steps 200 \\
      --batch-size 8 --seq-len-inputs 256 --seq-len-targets 32
  KERAS_BACKEND=jax flanforge train --data gs://bucket/flan --output runs/t5-base \\
      --preset ./presets/t5_base --holdout-clusters nli --steps 30000 --batch-size 128
  flanforge train --data out/demo --output runs/tiny --steps 400 --resume
"""

EVAL_DESCRIPTION = """\
Zero-shot evaluation on held-out clusters (split eval_zeroshot, or validation when absent):
rank classification accuracy for tasks with answer options, exact match / ROUGE-L / BLEU for
generative tasks; per task averaged over templates, per cluster averaged over tasks. With a
checkpoint, the untuned model is scored too, so the gain from instruction tuning is one table.

examples:
  flanforge evaluate --data out/demo --checkpoint runs/tiny
  flanforge evaluate --data out/demo --checkpoint runs/tiny/checkpoints/step-00000200 --output eval.json
  flanforge evaluate --data out/demo --checkpoint none --preset ./presets/t5_base --clusters nli
"""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _optional_int(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)


def _add_model_flags(p: argparse.ArgumentParser, defaults_note: str = "") -> None:
    p.add_argument("--format", dest="fmt", choices=("parquet", "tfrecord"), default="parquet",
                   help="which shards to read (default: parquet; tfrecord needs TensorFlow)")
    p.add_argument("--model", choices=("t5", "causal_lm"), default="t5",
                   help="encoder-decoder (t5) or decoder-only (causal_lm, packed, loss on targets only)" + defaults_note)
    p.add_argument("--preset", default="tiny",
                   help="'tiny' (random, tokenizer trained on the corpus), a local KerasHub preset directory, "
                        "or a KerasHub preset name (downloads)" + defaults_note)
    p.add_argument("--tokenizer", metavar="PATH",
                   help="SentencePiece model or tokenizer.json (default: the preset's own)" + defaults_note)
    p.add_argument("--seq-len-inputs", type=int, default=512, metavar="N", help="input tokens (default: 512)" + defaults_note)
    p.add_argument("--seq-len-targets", type=int, default=128, metavar="N", help="target tokens (default: 128)" + defaults_note)
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto: bf16 on TPU and NVIDIA Ampere or newer, else float32")


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flanforge train", description=TRAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="DIR_OR_GS_URI", help="build root holding manifest.json")
    p.add_argument("--output", required=True, metavar="RUN_DIR", help="run directory (local or mounted): checkpoints, logs, metrics.json")
    p.add_argument("--holdout-clusters", type=_csv, default=(), metavar="A,B", help="clusters kept out of training, for zero-shot evaluation")
    _add_model_flags(p)
    p.add_argument("--steps", type=int, default=1000, help="total training steps (default: 1000)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per step, over all devices (default: 32)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate (default: 1e-4)")
    p.add_argument("--mixing", choices=("examples_proportional", "equal"), default="examples_proportional",
                   help="task mixing; a manifest mixing_weight overrides the computed rate, and a recipe's collection "
                        "weights are kept (docs/COLLECTIONS.md) (default: examples_proportional)")
    p.add_argument("--rate-cap", type=_optional_int, default=None, metavar="N",
                   help="also bound each task's mixing weight by N (FLAN's K was 3000); by default the build's "
                        "weights are used as recorded, so the run mixes at the manifest's rates (default: none)")
    p.add_argument("--temperature", type=float, default=1.0, help="mixing temperature: rate ** (1/T) (default: 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seeds model init and data order (default: 0)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N", help="steps between checkpoints (default: 500)")
    p.add_argument("--keep-checkpoints", type=int, default=3, metavar="N", help="newest checkpoints kept (default: 3)")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="steps between log lines (default: 10)")
    p.add_argument("--verify-sha256", action="store_true", help="hash every training shard against the manifest first")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its latest checkpoint")
    p.add_argument("--run-eagerly", action="store_true", help="no graph compilation (debugging; faster for a few tiny steps)")
    return p


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flanforge evaluate", description=EVAL_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="DIR_OR_GS_URI", help="build root holding manifest.json")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR|CKPT_DIR|none",
                   help="a run directory (its latest checkpoint), one checkpoint directory, or 'none' for the untuned preset")
    p.add_argument("--clusters", type=_csv, default=(), metavar="A,B", help="clusters to score (default: the run's held-out clusters)")
    _add_model_flags(p, defaults_note="; only with --checkpoint none")
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (default: 32)")
    p.add_argument("--max-examples-per-template", type=_optional_int, default=None, metavar="N", help="cap per template (default: all)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip scoring the untuned model")
    p.add_argument("--seed", type=int, default=0, help="seed of the untuned tiny model (default: 0)")
    p.add_argument("--output", metavar="FILE.json", help="write the results here (default: RUN_DIR/eval.json with a checkpoint)")
    return p


def _run_train(args: argparse.Namespace) -> dict[str, Any]:
    from flanforge.training.train import TrainConfig, train

    return train(TrainConfig(**vars(args)))


def _run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from flanforge.training.checkpoint import resolve_checkpoint
    from flanforge.training.evaluate import EvalConfig, evaluate

    if args.output is None and args.checkpoint != "none":
        args.output = os.path.join(resolve_checkpoint(args.checkpoint)[0], "eval.json")
    return evaluate(EvalConfig(**vars(args)))


COMMANDS = {"train": (train_parser, _run_train), "evaluate": (evaluate_parser, _run_evaluate)}


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """Silence what C++ libraries print straight to file descriptor 2 while the backend starts
    (TensorFlow's absl preamble, CUDA probes such as `failed call to cuInit` on a CPU machine):
    TF_CPP_MIN_LOG_LEVEL does not reach all of it. Python errors are exceptions, shown after."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _start_backend_quietly() -> None:
    """Import the Keras backend and look at the devices once, with the native noise silenced, and
    hide Keras' warning that T5 attention layers drop input masks (they take padding masks as
    inputs instead). `-v` shows all of it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=r".*does not support masking and will therefore destroy the mask.*")
    with _native_stderr_quiet():
        from flanforge.training.devices import detect

        detect()


def main(argv: list[str]) -> int:
    """argv[0] is 'train' or 'evaluate'; the rest are that command's flags (and -v: show the
    backend's own log lines too)."""
    if not argv or argv[0] not in COMMANDS:
        print(f"flanforge: expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    make_parser, run = COMMANDS[argv[0]]
    verbose = any(a in ("-v", "--verbose") for a in argv[1:])
    args = make_parser().parse_args([a for a in argv[1:] if a not in ("-v", "--verbose")])
    if not verbose:
        _start_backend_quietly()
    try:
        run(args)
    except (TrainingInputError, ManifestError) as e:
        print(f"flanforge {argv[0]}: {e}", file=sys.stderr)
        return 2
    return 0
