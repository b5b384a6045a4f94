"""The output directory reads, unmodified, with the readers people already use: pandas,
pq.read_table, pyarrow datasets, DuckDB, Polars, `datasets.load_dataset(<output>)` with every split
under its own name (eval_zeroshot included, from the dataset card), tf.data, and JSON Lines.

seqio is not installed in the test environment, so it is untested (docs/READING.md says so);
READING.md shows the TFRecord source and feature spec it would use, which tf.data checks here."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.manifest import Manifest, read_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Manifest, dict[str, int]]:
    out = tmp_path_factory.mktemp("readers") / "out"
    args = ["--demo", "--output", str(out), "--holdout-clusters", "nli", "--formats", "tfrecord,parquet,jsonl", "--no-progress"]
    err = io.StringIO()
    assert run_build_cli(args, io.StringIO(), err) == 0, err.getvalue()
    manifest = read_manifest(str(out))
    per_split: dict[str, int] = {}
    for task in manifest.tasks.values():
        for split, n in task.written_by_split.items():
            per_split[split] = per_split.get(split, 0) + n
    assert set(per_split) == {"train", "eval_zeroshot"} and all(per_split.values())
    return out, manifest, per_split


def test_pandas_and_pq_read_table_read_the_folder(built):
    import pandas as pd
    import pyarrow.parquet as pq

    out, _, per_split = built
    frame = pd.read_parquet(out / "parquet")
    assert len(frame) == sum(per_split.values())
    assert frame["split"].value_counts().to_dict() == per_split
    table = pq.read_table(out / "parquet")
    assert table.num_rows == len(frame) and table.schema.field("split").type == "string"


def test_pyarrow_dataset_filters_by_split(built):
    import pyarrow.dataset as ds

    out, _, per_split = built
    dataset = ds.dataset(out / "parquet", format="parquet")
    assert dataset.count_rows(filter=ds.field("split") == "eval_zeroshot") == per_split["eval_zeroshot"]


def test_duckdb_and_polars(built):
    import duckdb
    import polars as pl

    out, _, per_split = built
    rows = duckdb.sql(f"select split, count(*) from read_parquet('{out}/parquet/*/*/*.parquet') group by split").fetchall()
    assert dict(rows) == per_split
    frame = pl.read_parquet(f"{out}/parquet/*/*/*.parquet")
    assert dict(frame.group_by("split").len().iter_rows()) == per_split


def test_datasets_load_dataset_of_the_folder_gives_every_split(built, tmp_path, monkeypatch):
    import datasets

    out, _, per_split = built
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    corpus = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {name: len(split) for name, split in corpus.items()} == per_split
    nli = datasets.load_dataset(str(out), "nli", cache_dir=str(tmp_path / "cache"))
    assert set(nli) == {"eval_zeroshot"} and set(nli["eval_zeroshot"]["cluster"]) == {"nli"}


def test_tf_data_reads_the_tfrecord_shards(built):
    import tensorflow as tf

    from flanforge.schemas.records import tf_feature_spec

    out, manifest, per_split = built
    files = [str(out / s.path) for s in manifest.shards_for(fmt="tfrecord") if s.split == "train"]
    spec = tf_feature_spec()
    def parse(record):
        example = tf.io.parse_single_example(record, spec)  # options is a VarLenFeature: a SparseTensor
        return {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in example.items()}

    records = list(tf.data.TFRecordDataset(files).map(parse).as_numpy_iterator())
    assert len(records) == per_split["train"] and {r["split"] for r in records} == {b"train"}


def test_json_lines_shards_hold_the_same_records_as_parquet(built):
    import json

    import pyarrow.parquet as pq

    out, manifest, _ = built
    for parquet in manifest.shards_for(fmt="parquet"):
        jsonl = out / parquet.path.replace("parquet", "jsonl")
        records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        assert records == pq.read_table(out / parquet.path).to_pylist()
