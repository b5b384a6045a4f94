"""TFRecord files of tf.train.Example and prepared TFDS datasets, read without tensorflow-datasets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.sources import ReadProblem, SourceError, SourceRow, kind_for_path, plan_files, plan_reads, read_shard

tf = pytest.importorskip("tensorflow")


def example(**features) -> bytes:
    """A serialized tf.train.Example; str/bytes -> bytes_list, int -> int64_list, float -> float_list (lists too)."""

    def feature(value):
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, (str, bytes)) for v in values):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v for v in values]))
        if all(isinstance(v, int) for v in values):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    return tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in features.items()})).SerializeToString()


def write_records(path: Path, records: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    return path


def rows_of(shards):
    return [item for s in shards for item in read_shard(s)]


@pytest.fixture
def rte(templates_dir):
    return load_catalog(templates_dir).tasks["rte"]


def test_tfrecord_examples_become_plain_rows(tmp_path, rte):
    path = write_records(
        tmp_path / "d.tfrecord",
        [
            example(premise="Café au lait.", label=1, scores=[0.5, 0.25], tokens=["a", "b"], blob=b"\xff\xfe"),
            example(premise="Second.", label=0, scores=[1.5], tokens=[]),
        ],
    )
    shards = plan_files(rte, "train", str(path))
    assert [(s.kind, s.start, s.end) for s in shards] == [("tfrecord", 0, -1)]
    got = rows_of(shards)
    assert [r.row for r in got] == [
        {"blob": b"\xff\xfe", "label": 1, "premise": "Café au lait.", "scores": [0.5, 0.25], "tokens": ["a", "b"]},
        {"label": 0, "premise": "Second.", "scores": 1.5, "tokens": []},
    ]
    assert [r.example_id for r in got] == ["train:d.tfrecord:0", "train:d.tfrecord:1"]


def test_tfds_style_shard_names_are_tfrecord(tmp_path):
    assert kind_for_path("gs://b/glue-train.tfrecord-00000-of-00004") == "tfrecord"
    assert kind_for_path("/data/x.tfrecord") == "tfrecord"
    with pytest.raises(SourceError, match="cannot tell the format"):
        kind_for_path("/data/x.tfrecord.gz")


def test_corrupt_records_are_dead_letters_not_crashes(tmp_path, rte):
    path = write_records(tmp_path / "d.tfrecord", [example(premise="a"), b"\xff\xff\xff", example(premise="b"), example(premise="c")])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip a byte inside the last record: its checksum no longer matches
    path.write_bytes(bytes(data))
    got = rows_of(plan_files(rte, "train", str(path)))
    assert [r.row["premise"] for r in got if isinstance(r, SourceRow)] == ["a", "b"]
    problems = [p for p in got if isinstance(p, ReadProblem)]
    assert [p.where for p in problems] == ["d.tfrecord record 1", "d.tfrecord record 3"]
    assert problems[0].error.startswith("not a tf.train.Example")
    assert problems[1].error == "damaged TFRecord, rest of the file skipped: corrupt record data at byte 91"


def test_tfrecord_reads_the_same_from_gcs(gcs_emulator, tmp_path, rte):
    from gcs_files import upload_tree

    write_records(tmp_path / "d" / "x.tfrecord-00000-of-00002", [example(premise=f"p{i}") for i in range(3)])
    write_records(tmp_path / "d" / "x.tfrecord-00001-of-00002", [example(premise="q")])
    root = upload_tree(tmp_path / "d", f"gs://{gcs_emulator.new_bucket()}/d")
    local = rows_of(plan_files(rte, "train", str(tmp_path / "d" / "x.tfrecord-*")))
    remote = rows_of(plan_files(rte, "train", f"{root}/x.tfrecord-*"))
    assert remote == local and [r.row["premise"] for r in remote] == ["p0", "p1", "p2", "q"]


def prepare_tfds(data_dir: Path, version: str, splits: dict[str, list[list[bytes]]]) -> Path:
    """The on-disk layout `tfds build` leaves: <data_dir>/glue/rte/<version>/dataset_info.json and
    glue-<split>.tfrecord-NNNNN-of-NNNNN files, one per shard."""
    root = data_dir / "glue" / "rte" / version
    info_splits = []
    for split, shards in splits.items():
        for i, records in enumerate(shards):
            write_records(root / f"glue-{split}.tfrecord-{i:05d}-of-{len(shards):05d}", records)
        info_splits.append({"name": split, "numBytes": "1", "shardLengths": [str(len(r)) for r in shards]})
    (root / "dataset_info.json").write_text(json.dumps({"name": "glue", "version": version, "fileFormat": "tfrecord", "splits": info_splits}))
    return root


def rte_row(i: int) -> bytes:
    return example(idx=i, label=i % 2, sentence1=f"Premise {i}.", sentence2=f"Claim {i}.")


def tfds_spec(templates_dir: Path, name: str, data_dir: str):
    """rte, re-pointed at a TFDS source through its YAML (so the schema accepts the new kind)."""
    path = templates_dir / "nli" / "rte.yaml"
    data = yaml.safe_load(path.read_text())
    data["source"] = {"kind": "tfds", "name": name, "data_dir": data_dir, "id_field": "idx", "splits": {"train": "train", "validation": "validation"}}
    data["fields"] = {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_catalog(templates_dir).tasks["rte"]


def test_prepared_tfds_dataset_is_read_from_its_tfrecord_files(tmp_path, templates_dir):
    data_dir = tmp_path / "tfds"
    prepare_tfds(data_dir, "2.0.0", {"train": [[rte_row(0), rte_row(1)], [rte_row(2)]], "validation": [[rte_row(10)]]})
    prepare_tfds(data_dir, "1.0.0", {"train": [[rte_row(99)]], "validation": [[rte_row(98)]]})
    spec = tfds_spec(templates_dir, "glue/rte:2.0.0", str(data_dir))
    shards = plan_reads(spec, demo=False, overrides={})
    assert [(s.split, s.kind, s.id_prefix) for s in shards] == [
        ("train", "tfrecord", "glue-train.tfrecord-00000-of-00002"),
        ("train", "tfrecord", "glue-train.tfrecord-00001-of-00002"),
        ("validation", "tfrecord", "glue-validation.tfrecord-00000-of-00001"),
    ]
    got = rows_of(shards)
    assert [(r.example_id, r.row["sentence1"]) for r in got] == [
        ("train:0", "Premise 0."), ("train:1", "Premise 1."), ("train:2", "Premise 2."), ("validation:10", "Premise 10."),
    ]
    # No version in the name: the newest prepared version.
    newest = plan_reads(tfds_spec(templates_dir, "glue/rte", str(data_dir)), demo=False, overrides={}, splits={"validation": "eval_zeroshot"})
    assert [(r.split, r.example_id) for r in rows_of(newest)] == [("eval_zeroshot", "eval_zeroshot:10")]


def test_tfds_problems_fail_before_the_pipeline(tmp_path, templates_dir):
    data_dir = tmp_path / "tfds"
    root = prepare_tfds(data_dir, "2.0.0", {"train": [[rte_row(0)], [rte_row(1)]]})
    (root / "glue-train.tfrecord-00001-of-00002").unlink()
    spec = tfds_spec(templates_dir, "glue/rte:2.0.0", str(data_dir))
    with pytest.raises(SourceError, match=r"^task rte split train: .*glue-train.tfrecord-\*: found 1 of the 2 shard files"):
        plan_reads(spec, demo=False, overrides={}, splits={"train": "train"})
    with pytest.raises(SourceError, match=r"^task rte split validation: .*2.0.0: no TFDS split 'validation' \(has train\)$"):
        plan_reads(spec, demo=False, overrides={}, splits={"validation": "validation"})
    with pytest.raises(SourceError, match=r"^task rte split train: .*glue/rte/3.0.0/dataset_info.json not found; prepare the dataset first"):
        plan_reads(tfds_spec(templates_dir, "glue/rte:3.0.0", str(data_dir)), demo=False, overrides={}, splits={"train": "train"})


def test_tfds_dataset_in_gcs(gcs_emulator, tmp_path, templates_dir):
    from gcs_files import upload_tree

    prepare_tfds(tmp_path / "tfds", "2.0.0", {"train": [[rte_row(0), rte_row(1)]], "validation": [[rte_row(5)]]})
    data_dir = upload_tree(tmp_path / "tfds", f"gs://{gcs_emulator.new_bucket()}/tfds")
    got = rows_of(plan_reads(tfds_spec(templates_dir, "glue/rte", data_dir), demo=False, overrides={}))
    assert [r.example_id for r in got] == ["train:0", "train:1", "validation:5"]
