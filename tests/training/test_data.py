"""Manifest reading, shard verification, mixture weights and the resumable task mixture."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from flanforge.schemas.manifest import ManifestError
from flanforge.training.data import (
    DataError,
    Mixture,
    build_mixture,
    check_clusters,
    eval_split,
    mixture_weights,
    open_corpus,
    task_sizes,
    train_shards,
    verify_shard_files,
)


def test_manifest_reading_selects_train_shards_and_eval_split(corpus: str) -> None:
    m = open_corpus(corpus, "parquet")
    assert set(m.clusters) == {"nli", "closed_book_qa", "reading_comprehension"}
    shards = train_shards(m, "parquet", holdout=["nli"])
    assert {s.cluster for s in shards} == {"closed_book_qa", "reading_comprehension"}
    assert all(s.split == "train" and s.format == "parquet" for s in shards)
    verify_shard_files(m, shards, check_sha256=True)
    sizes = task_sizes(m, shards)
    assert sizes["bool_q"] == m.tasks["bool_q"].written_by_split["train"]
    assert sizes["trivia_qa"] == 0  # validation only in this corpus
    assert "rte" not in sizes
    assert eval_split(m) == "validation"


def test_unknown_holdout_cluster_is_named(corpus: str) -> None:
    with pytest.raises(DataError, match="nlii.*the build has: closed_book_qa, nli, reading_comprehension"):
        check_clusters(open_corpus(corpus, "parquet"), ["nlii"])


def _copy(corpus: str, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(corpus, dst)
    return dst


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest.json"):
        open_corpus(str(tmp_path), "parquet")


def test_missing_shard(corpus: str, tmp_path: Path) -> None:
    root = _copy(corpus, tmp_path)
    m = open_corpus(str(root), "parquet")
    (root / m.shards_for(fmt="parquet", splits=["train"])[0].path).unlink()
    with pytest.raises(ManifestError, match="missing"):
        verify_shard_files(m, train_shards(m, "parquet", []))


def test_row_count_differs(corpus: str, tmp_path: Path) -> None:
    root = _copy(corpus, tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    shard = next(s for s in manifest["shards"] if s["format"] == "parquet" and s["split"] == "train")
    shard["rows"] += 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    m = open_corpus(str(root), "parquet")
    with pytest.raises(ManifestError, match=f"has {shard['rows'] - 1} rows, the manifest says {shard['rows']}"):
        verify_shard_files(m, train_shards(m, "parquet", []))


def test_mixture_weights_cap_temperature_and_explicit() -> None:
    sizes = {"big": 100_000, "mid": 3000, "small": 1000, "empty": 0}
    w = mixture_weights(sizes, rate_cap=3000)
    assert w == pytest.approx({"big": 3 / 7, "mid": 3 / 7, "small": 1 / 7})
    hot = mixture_weights(sizes, rate_cap=3000, temperature=2.0)
    assert hot["small"] / hot["big"] == pytest.approx((1000 / 3000) ** 0.5)
    assert mixture_weights(sizes, rate_cap=None)["big"] == pytest.approx(100_000 / 104_000)
    assert mixture_weights(sizes, rate_cap=3000, explicit={"small": 2000.0})["small"] == pytest.approx(2000 / 8000)
    # the build's weight is still bounded by this run's rate cap, when one is given
    assert mixture_weights(sizes, rate_cap=3000, explicit={"small": 6000.0})["small"] == pytest.approx(1 / 3)
    # by default the build's weights are followed as recorded (and a task without one by its size)
    assert mixture_weights(sizes, explicit={"big": 3000.0, "mid": 3000.0, "small": 6000.0}) == pytest.approx({"big": 0.25, "mid": 0.25, "small": 0.5})
    assert mixture_weights(sizes, method="equal") == pytest.approx({"big": 1 / 3, "mid": 1 / 3, "small": 1 / 3})
    with pytest.raises(DataError, match="every selected task is empty"):
        mixture_weights({"empty": 0})


def test_empirical_task_frequencies_match_weights(corpus: str) -> None:
    m = open_corpus(corpus, "parquet")
    shards = train_shards(m, "parquet", ["nli"])
    tasks = sorted(t for t, n in task_sizes(m, shards).items() if n)
    weights = mixture_weights({t: 1 for t in tasks}, explicit={t: float(i + 1) for i, t in enumerate(tasks)})
    n = 20_000
    seen = Counter(ex.task for ex, _ in zip(build_mixture(m, shards, weights, seed=3), range(n)))
    for t, w in weights.items():
        assert seen[t] / n == pytest.approx(w, abs=4 * (w * (1 - w) / n) ** 0.5 + 1e-3), t


def test_a_cluster_is_read_once_an_epoch_whatever_its_tasks_rates(corpus: str, monkeypatch) -> None:
    """Every task of a cluster has rows in every shard of it: the cluster's tasks share one read of
    a shard per epoch, and a task weighted far above (or below) its share of rows is drawn at its
    weight all the same."""
    from flanforge.training import data

    reads: Counter = Counter()
    read = data.read_output_shard
    monkeypatch.setattr(data, "read_output_shard", lambda m, shard, columns: reads.update([shard.path]) or read(m, shard, columns))
    m = open_corpus(corpus, "parquet")
    shards = train_shards(m, "parquet", [])
    sizes = task_sizes(m, shards)
    explicit = {t: float(n) for t, n in sizes.items() if n}
    explicit["snli"] *= 6  # yielded ~6 times a row each epoch
    explicit["qnli"] /= 5  # ~one row in five
    weights = mixture_weights(sizes, explicit=explicit)
    mixture = build_mixture(m, shards, weights, seed=5)
    n = 8000
    seen = Counter(ex.task for _, ex in zip(range(n), mixture))
    assert len(m.clusters["nli"]) >= 8
    for s in shards:  # one shard per cluster in this corpus: read once for each epoch begun
        assert reads[s.path] == mixture.streams[s.cluster].position.epoch + 1 >= 3, s.cluster
    for t in ("snli", "qnli", "bool_q"):
        w = weights[t]
        assert seen[t] / n == pytest.approx(w, abs=4 * (w * (1 - w) / n) ** 0.5 + 1e-3), t
    assert seen == mixture.drawn_by_task


def test_a_weighted_task_missing_from_its_cluster_shards_is_named_once_epoch_0_was_read() -> None:
    import pyarrow as pa

    from flanforge.schemas.manifest import ShardInfo
    from flanforge.training.data import ClusterStream

    shards = [ShardInfo(f"parquet/train/c/part-0000{i}-of-00002.parquet", "parquet", "train", "c", 3, 1, "0") for i in range(2)]
    held = {shards[0].path: ["a", "a", "b"], shards[1].path: ["a", "a", "a"]}  # the manifest also counts task z

    def reader(shard):
        tasks = held[shard.path]
        return pa.table({"inputs": [f"{t} {i}" for i, t in enumerate(tasks)], "targets": ["x"] * 3, "task": tasks})

    def stream() -> ClusterStream:
        return ClusterStream("c", shards, reader, {"a": 5.0, "b": 1.0, "z": 1.0}, {"a": 5, "b": 1, "z": 1}, seed=0)

    whole = stream()
    with pytest.raises(DataError, match="task.s. z: the c shards hold none of their rows"):
        for _ in range(20):
            whole.advance()
    resumed = stream()  # resumed inside epoch 0: the shards before its position were never read here
    resumed.position.shard = 1
    for _ in range(20):
        resumed.advance()
    assert resumed.position.epoch >= 1


def test_heldout_cluster_never_drawn(corpus: str) -> None:
    m = open_corpus(corpus, "parquet")
    shards = train_shards(m, "parquet", ["nli"])
    weights = mixture_weights(task_sizes(m, shards))
    drawn = [ex for ex, _ in zip(build_mixture(m, shards, weights, seed=0), range(3000))]
    nli_tasks = set(m.clusters["nli"])
    assert not {ex.task for ex in drawn} & nli_tasks
    assert {ex.task for ex in drawn} == {t for t, w in weights.items() if w > 0}


def _take(mixture: Mixture, n: int) -> list:
    return [next(mixture) for _ in range(n)]


def test_mixture_restores_exact_position(corpus: str) -> None:
    m = open_corpus(corpus, "parquet")
    shards = train_shards(m, "parquet", [])
    weights = mixture_weights(task_sizes(m, shards))
    straight = build_mixture(m, shards, weights, seed=7)
    first = _take(straight, 500)  # several epochs of every task
    state = json.loads(json.dumps(straight.state()))
    expected = _take(straight, 200)
    resumed = build_mixture(m, shards, weights, seed=7)
    resumed.restore(state)
    assert _take(resumed, 200) == expected
    assert _take(build_mixture(m, shards, weights, seed=7), 500) == first  # seeded
    assert _take(build_mixture(m, shards, weights, seed=8), 500) != first
    with pytest.raises(DataError, match="per task, from a flanforge before streams were per cluster"):
        resumed.restore({"drawn": 3, "tasks": {t: {"epoch": 0, "shard": 0, "row": 1} for t in weights}})


def test_tfrecord_shards_give_the_same_stream(corpus: str) -> None:
    pytest.importorskip("tensorflow")
    streams = []
    for fmt in ("parquet", "tfrecord"):
        m = open_corpus(corpus, fmt)
        shards = train_shards(m, fmt, ["nli"])
        streams.append(_take(build_mixture(m, shards, mixture_weights(task_sizes(m, shards)), seed=1), 100))
    assert streams[0] == streams[1]
