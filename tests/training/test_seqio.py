"""A build registered as seqio Tasks and a Mixture (training/seqio_tasks.py).

The plan (which Task reads which shards, at which rate) is checked on a real build everywhere.
Reading batches through seqio needs seqio itself, which is not in the pinned set: with
sentencepiece 0.2.3 (its generated code needs protobuf >= 7.36.1) and protobuf 6.33.6 (apache-beam
caps protobuf < 7) `import seqio` fails, so those tests skip here unless seqio==0.0.20 and
sentencepiece==0.2.1 are installed (docs/SEQIO.md).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from flanforge.schemas.manifest import Manifest, read_manifest
from flanforge.training.data import DataError, read_output_shard, row_factors, task_sizes
from flanforge.training.seqio_tasks import at_task_rates, plan_corpus, register_corpus

HELD_OUT = "nli"
TRAINED = "closed_book_qa"


@pytest.fixture(scope="module")
def holdout_build(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two clusters as TFRecord, nli held out: its tasks have only eval_zeroshot data."""
    from flanforge.beam_pipelines.build import run_build_cli

    out = tmp_path_factory.mktemp("seqio") / "build"
    argv = ["--demo", "--output", str(out), "--clusters", f"{HELD_OUT},{TRAINED}", "--holdout-clusters", HELD_OUT,
            "--formats", "tfrecord", "--no-progress"]
    assert run_build_cli(argv) == 0
    return str(out)


def test_the_plan_is_a_task_per_task_over_its_clusters_shards_mixed_by_cluster(holdout_build: str) -> None:
    m = read_manifest(holdout_build)
    plan = plan_corpus(m, prefix="ff_")
    by_task = {t.task: t for t in plan.tasks}
    assert sorted(by_task) == sorted(m.tasks) and all(t.name == "ff_" + t.task for t in plan.tasks)
    for task, entry in m.tasks.items():
        expected = {s.split: tuple(m.uri(s.path) for s in m.shards_for(fmt="tfrecord", splits=[s.split], clusters=[entry.cluster]))
                    for s in m.shards_for(fmt="tfrecord", clusters=[entry.cluster])}
        assert by_task[task].files == expected, task
        assert set(expected) == ({"eval_zeroshot"} if entry.cluster == HELD_OUT else {"train"})
    assert plan.mixture == "ff_mixture"
    trained = {t for t, e in m.tasks.items() if e.cluster == TRAINED}
    total = sum(m.tasks[t].mixing_weight for t in trained)
    assert plan.task_rates == pytest.approx({t: m.tasks[t].mixing_weight / total for t in trained})
    # the Mixture's Tasks are per cluster: each reads its train shards once, its tasks at their rates
    (cluster,) = plan.clusters
    assert (cluster.name, cluster.cluster) == (f"ff_cluster:{TRAINED}", TRAINED)
    assert cluster.files == tuple(m.uri(s.path) for s in m.shards_for(fmt="tfrecord", splits=["train"], clusters=[TRAINED]))
    assert cluster.factors == pytest.approx(row_factors(plan.task_rates, task_sizes(m, m.shards_for(fmt="tfrecord", splits=["train"]))))
    assert plan.rates == pytest.approx({cluster.name: 1.0})


def test_the_rates_are_the_manifests_mixing_weights_not_the_counts(holdout_build: str) -> None:
    m = read_manifest(holdout_build)
    trained = sorted(t for t, e in m.tasks.items() if e.cluster == TRAINED)
    weights = {t: 10 * (i + 1) for i, t in enumerate(trained)}  # the counts are all equal in the demo build
    reweighted = replace(m, tasks={t: replace(e, mixing_weight=weights.get(t, 0)) for t, e in m.tasks.items()})
    plan = plan_corpus(reweighted)
    assert plan.task_rates == pytest.approx({t: w / sum(weights.values()) for t, w in weights.items()})
    factors = plan.clusters[0].factors  # equal counts: a task with twice the weight has each record yielded twice as often
    assert factors[trained[1]] == pytest.approx(2 * factors[trained[0]])


def test_what_seqio_cannot_take_is_refused_clearly(holdout_build: str) -> None:
    m = read_manifest(holdout_build)
    with pytest.raises(DataError, match=r"seqio name 'my-corpus/anli_r1': seqio allows only"):
        plan_corpus(m, prefix="my-corpus/")
    parquet_only: Manifest = replace(m, shards=tuple(replace(s, format="parquet") for s in m.shards))
    with pytest.raises(DataError, match="has no tfrecord shards; seqio reads those"):
        plan_corpus(parquet_only)
    no_train = replace(m, shards=tuple(s for s in m.shards if s.split != "train"))
    with pytest.raises(DataError, match="has no train shards to mix"):
        plan_corpus(no_train)


def _seqio():
    """seqio, or a skip that says why it is missing here."""
    try:
        from google.protobuf.runtime_version import VersionError
    except ImportError:  # protobuf < 5.26 has no runtime check
        VersionError = ImportError  # noqa: N806
    try:
        import seqio
    except ImportError:
        pytest.skip("seqio is not installed (pip install seqio==0.0.20 sentencepiece==0.2.1; docs/SEQIO.md)")
    except VersionError as e:
        pytest.skip(f"seqio does not import with the pinned sentencepiece/protobuf ({str(e).split('.')[0]}); docs/SEQIO.md")
    return seqio


def _task_texts(m: Manifest, task: str, split: str) -> list[tuple[str, str]]:
    cluster = m.tasks[task].cluster
    pairs = []
    for shard in m.shards_for(fmt="tfrecord", splits=[split], clusters=[cluster]):
        table = read_output_shard(m, shard, ["inputs", "targets", "task"]).to_pylist()
        pairs += [(r["inputs"], r["targets"]) for r in table if r["task"] == task]
    return sorted(pairs)


def test_seqio_reads_each_tasks_records_as_text(holdout_build: str) -> None:
    seqio = _seqio()
    m = read_manifest(holdout_build)
    register_corpus(holdout_build)
    for task, split in (("trivia_qa", "train"), ("rte", "eval_zeroshot")):
        ds = seqio.get_mixture_or_task("flanforge_" + task).get_dataset(None, split=split, shuffle=False)
        got = sorted((ex["inputs"].decode(), ex["targets"].decode()) for ex in ds.as_numpy_iterator())
        assert got == _task_texts(m, task, split) and len(got) == m.tasks[task].written_by_split[split]


def test_a_cluster_task_reads_its_shards_once_and_yields_records_at_their_tasks_rates(holdout_build: str) -> None:
    seqio = _seqio()
    import tensorflow as tf

    m = read_manifest(holdout_build)
    register_corpus(holdout_build, prefix="ffc_")
    epoch = seqio.get_mixture_or_task(f"ffc_cluster:{TRAINED}").get_dataset(None, split="train", shuffle=False, seed=0)
    got = sorted((ex["inputs"].decode(), ex["targets"].decode()) for ex in epoch.as_numpy_iterator())
    trained = sorted(t for t, e in m.tasks.items() if e.cluster == TRAINED and e.written_by_split.get("train"))
    assert got == sorted(p for t in trained for p in _task_texts(m, t, "train"))  # equal rates and counts: every record once
    records = tf.data.Dataset.from_tensor_slices({"inputs": ["a1", "a2", "b1", "c1"], "targets": ["x"] * 4, "task": ["a", "a", "b", "c"]})
    with seqio.utils.map_seed_manager(7):
        drawn = [ex["inputs"].decode() for ex in at_task_rates(records, {"a": 2.0, "b": 0.0, "c": 1.0}).as_numpy_iterator()]
    assert drawn == ["a1", "a1", "a2", "a2", "c1"]  # whole factors need no draw; a task outside the mix yields nothing


def test_seqio_batches_the_mixture_with_a_sentencepiece_vocabulary(holdout_build: str, tmp_path: Path) -> None:
    seqio = _seqio()
    from flanforge.training.tokenizer import train_tiny_tokenizer
    from flanforge.training.train import corpus_texts

    m = read_manifest(holdout_build)
    train_shards = m.shards_for(fmt="tfrecord", splits=["train"])
    tok = train_tiny_tokenizer(corpus_texts(m, train_shards), str(tmp_path / "tiny.model"))
    name = register_corpus(holdout_build, vocabulary=tok.path, prefix="ffsp_")

    mixture = seqio.get_mixture_or_task(name)
    assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == pytest.approx(plan_corpus(m, prefix="ffsp_").rates)
    lengths = {"inputs": 64, "targets": 16}
    ds = seqio.get_dataset(name, lengths, seqio.EncDecFeatureConverter(pack=False), shuffle=True, seed=3, batch_size=4)
    batches = list(ds.take(3).as_numpy_iterator())
    assert len(batches) == 3
    assert batches[0]["encoder_input_tokens"].shape == (4, 64) and batches[0]["decoder_target_tokens"].shape == (4, 16)
    train_inputs = [tuple(tok.encode(i)) for t, e in m.tasks.items() if e.cluster == TRAINED for i, _ in _task_texts(m, t, "train")]
    for batch in batches:
        for inputs, targets in zip(batch["encoder_input_tokens"], batch["decoder_target_tokens"]):
            inputs, targets = inputs[inputs > 0], targets[targets > 0]
            assert inputs[-1] == targets[-1] == tok.eos_id
            body = tuple(int(x) for x in inputs[:-1])
            assert any(ids[: len(body)] == body for ids in train_inputs)  # a (trimmed) input of a trained task
