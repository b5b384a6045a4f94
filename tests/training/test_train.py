"""Training on a pipeline-built corpus: the loss falls, resume is exact, bad input stops early."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flanforge.training import checkpoint as ckpt_lib
from flanforge.training.cli import main
from flanforge.training.data import build_mixture, mixture_weights, open_corpus, task_sizes, train_shards
from flanforge.training.features import BatchLayout, SequenceLengths, TokenizedMixture, next_batch
from flanforge.training.tokenizer import load_tokenizer
from flanforge.training.train import BatchTooLargeError, TrainConfig, first_step_guard, train

SMALL = dict(batch_size=4, seq_len_inputs=48, seq_len_targets=16, learning_rate=3e-3, log_every=1)


def _config(corpus: str, out: Path, **kw) -> TrainConfig:
    return TrainConfig(data=corpus, output=str(out), **{**SMALL, **kw})


def test_a_few_steps_lower_the_loss(corpus: str, tmp_path: Path) -> None:
    metrics = train(_config(corpus, tmp_path / "run", holdout_clusters=("nli",), steps=20, checkpoint_every=20, learning_rate=1e-2))
    assert metrics["loss_mean_last_10"] < metrics["loss_first"] - 0.5
    assert not set(metrics["examples_by_task"]) & {"anli_r1", "rte", "snli", "qnli", "cb"}  # held out
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["step"] == 20 and 0 <= saved["padding_fraction"] < 1
    assert os.listdir(tmp_path / "run" / "logs")  # TensorBoard events


def _weights(run_dir: Path) -> list[np.ndarray]:
    import h5py

    ckpt = ckpt_lib.latest_checkpoint(str(run_dir))
    with h5py.File(ckpt.weights) as f:
        out: list[np.ndarray] = []
        f.visititems(lambda name, obj: out.append(np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_resume_gives_the_same_next_batch_and_weights(corpus: str, tmp_path: Path) -> None:
    base = _config(corpus, tmp_path / "straight", model="causal_lm", steps=4, checkpoint_every=2)
    train(base)
    interrupted = replace(base, output=str(tmp_path / "resumed"), steps=2)
    train(interrupted)

    # The data position saved at step 2 yields exactly the batch the uninterrupted run trained on at step 3.
    m = open_corpus(corpus, "parquet")
    shards = train_shards(m, "parquet", [])
    tok = load_tokenizer(str(tmp_path / "resumed" / "tokenizer" / "tiny.model"))
    layout = BatchLayout("causal_lm", SequenceLengths(48, 16), packed=True)

    def stream():
        return TokenizedMixture(build_mixture(m, shards, mixture_weights(task_sizes(m, shards)), seed=0), tok, layout.lengths, eos_on_inputs=False)

    straight = stream()
    batches = [next_batch(straight, layout, 4, tok.pad_id) for _ in range(3)]
    resumed = stream()
    resumed.mixture.restore(ckpt_lib.latest_checkpoint(str(tmp_path / "resumed")).data_state())
    np.testing.assert_array_equal(next_batch(resumed, layout, 4, tok.pad_id).x["token_ids"], batches[2].x["token_ids"])

    train(replace(interrupted, steps=4, resume=True))
    for a, b in zip(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["step"] == 4


def _train_cli(corpus: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", corpus, "--output", str(out), "--steps", "1", "--batch-size", "2",
            "--seq-len-inputs", "32", "--seq-len-targets", "8", "--run-eagerly", *extra]


def test_bad_inputs_fail_before_training(corpus: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    next(s for s in manifest["shards"] if s["format"] == "parquet" and s["split"] == "train")["rows"] += 5
    (broken / "manifest.json").write_text(json.dumps(manifest))
    cases = {
        "no manifest.json in": _train_cli(str(tmp_path), tmp_path / "r1"),
        "rows, the manifest says": _train_cli(str(broken), tmp_path / "r2"),
        "cluster(s) not in": _train_cli(corpus, tmp_path / "r3", "--holdout-clusters", "nli,sentimnet"),
        "no such directory": _train_cli(corpus, tmp_path / "r4", "--preset", str(tmp_path / "no-preset")),
        "--batch-size must be at least 1": _train_cli(corpus, tmp_path / "r5", "--batch-size", "0"),
    }
    for message, argv in cases.items():
        assert main(argv) == 2, message
        assert message in capsys.readouterr().err
        assert not (Path(argv[4]) / "checkpoints").exists()


def test_out_of_memory_on_the_first_batch_is_a_clear_error() -> None:
    def step(*_):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2TiB")

    with pytest.raises(BatchTooLargeError, match="batch of 64 x 640 tokens does not fit"):
        first_step_guard(step, 64, 640)()


def test_existing_run_is_not_clobbered(corpus: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"config": {}}))
    assert main(_train_cli(corpus, tmp_path / "run")) == 2
    assert "--resume" in capsys.readouterr().err


def test_train_then_evaluate_from_the_cli(corpus: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", corpus, "--output", str(run), "--holdout-clusters", "nli,closed_book_qa",
                 "--steps", "3", "--batch-size", "4", "--seq-len-inputs", "48", "--seq-len-targets", "8",
                 "--run-eagerly", "--checkpoint-every", "2"]) == 0
    assert main(["evaluate", "--data", corpus, "--checkpoint", str(run), "--batch-size", "8",
                 "--max-examples-per-template", "1"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["split"] == "validation" and result["clusters"] == ["nli", "closed_book_qa"]
    for name in ("untuned", "tuned"):
        tasks = result["results"][name]["tasks"]
        assert 0 <= tasks["rte"]["accuracy"] <= 100
        assert {"exact_match", "rouge_l", "bleu"} <= set(tasks["trivia_qa"])
    assert "gain" in capsys.readouterr().out


def test_help_lists_the_flags(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--holdout-clusters", "--rate-cap", "--temperature", "--resume", "--seq-len-targets", "KERAS_BACKEND"):
        assert flag in out


def test_a_kerashub_preset_name_resolves_to_its_downloaded_directory_or_says_what_to_do(monkeypatch, tmp_path):
    import kagglehub

    from flanforge.training.errors import TrainingInputError
    from flanforge.training.model import resolve_preset

    fetched = []
    monkeypatch.setattr(kagglehub, "model_download", lambda handle: fetched.append(handle) or str(tmp_path))
    assert resolve_preset("t5_small_multi") == str(tmp_path) and fetched == ["keras/t5/keras/t5_small_multi/3"]

    def offline(handle):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(kagglehub, "model_download", offline)
    with pytest.raises(TrainingInputError, match=r"--preset t5_small_multi: the KerasHub preset \(kaggle://keras/t5/keras/t5_small_multi/3\) could not be downloaded \(ConnectionError\).*then pass --preset DIR"):
        resolve_preset("t5_small_multi")
    assert resolve_preset("tiny") == "tiny" and resolve_preset(str(tmp_path)) == str(tmp_path)
