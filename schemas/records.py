"""The output record: one rendered (inputs, targets) pair and where it came from.

This is the contract between the pipeline and every reader of its shards (our trainer, tf.data,
seqio, HF datasets, pyarrow). It is declared once here, as a list of typed fields, and both the
Arrow schema and the tf.train.Example feature spec are derived from it, so the two cannot drift.
The module imports neither Beam nor TensorFlow: the trainer must run without them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, TypedDict

import pyarrow as pa

FieldKind = Literal["string", "string_list", "int64"]


@dataclass(frozen=True)
class RecordField:
    name: str
    kind: FieldKind
    doc: str


RECORD_FIELDS: tuple[RecordField, ...] = (
    RecordField("inputs", "string", "The instruction and task input shown to the model."),
    RecordField("targets", "string", "The expected output."),
    RecordField("task", "string", "Task key from the catalog (e.g. rte)."),
    RecordField("cluster", "string", "Task cluster (e.g. nli); also a path partition."),
    RecordField("collection", "string", "The task's collection (flan2021, p3, niv2, cot, ...), whose weight a recipe sets."),
    RecordField("template_id", "string", "Which template of the task rendered this record."),
    RecordField("template_type", "string", "One of TEMPLATE_TYPES."),
    RecordField("options", "string_list", "Answer options for rank classification; empty when generative or inverted."),
    RecordField("answer_index", "int64", "Index of the target in options, or -1."),
    RecordField("split", "string", "Output split (train, validation, ...); also a path partition."),
    RecordField("example_id", "string", "Stable id of the source row."),
    RecordField("content_hash", "string", "Hex hash of the normalised (inputs, targets); the dedup key."),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in RECORD_FIELDS)


class Record(TypedDict):
    """One record as the pipeline carries it from Render to the spill file (a dict, so a batch
    of them becomes an Arrow batch in one call; typed, so readers and checkers know its keys).
    After the spill, records are Arrow batches with `arrow_schema()`. A test checks that these
    keys are RECORD_FIELDS."""

    inputs: str
    targets: str
    task: str
    cluster: str
    collection: str
    template_id: str
    template_type: str
    options: list[str]
    answer_index: int
    split: str
    example_id: str
    content_hash: str

# zero_shot: options shown (or a generative task); zero_shot_no_options: a classification
# template rendered without its options; inverted: the task turned around; free_text: a free-text
# target about the example (an explanation) in a task with options; cot: a rationale followed by
# the answer sentence (chain of thought). The few_shot_* types are the same renders preceded by
# exemplars from the same split.
TEMPLATE_TYPES: tuple[str, ...] = (
    "zero_shot", "zero_shot_no_options", "inverted", "free_text", "cot",
    "few_shot", "few_shot_no_options", "few_shot_inverted", "few_shot_free_text", "few_shot_cot",
)

NO_ANSWER = -1

# The split a held-out cluster's evaluation data is written to (never trained on).
EVAL_ZEROSHOT = "eval_zeroshot"

# Shard formats: name -> file extension. Path layout: <format>/<split>/<cluster>/part-SSSSS-of-NNNNN.<ext>
# Plain folder names, not hive-style `split=S/`: split and cluster are columns of every record, and
# a reader that also derived them from `key=value` folders (pandas, pq.read_table, pyarrow
# datasets, DuckDB, Polars all do by default) would meet each field twice with two types.
FORMATS: dict[str, str] = {"tfrecord": "tfrecord", "parquet": "parquet", "jsonl": "jsonl"}
DEFAULT_FORMATS: tuple[str, ...] = ("tfrecord", "parquet")


def shard_path(fmt: str, split: str, cluster: str, index: int, count: int) -> str:
    return f"{fmt}/{split}/{cluster}/part-{index:05d}-of-{count:05d}.{FORMATS[fmt]}"

_ARROW_TYPES = {"string": pa.string(), "string_list": pa.list_(pa.string()), "int64": pa.int64()}


def arrow_schema() -> pa.Schema:
    """The Parquet/Arrow schema of a shard."""
    return pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.kind], nullable=False, metadata={"doc": f.doc}) for f in RECORD_FIELDS]
    )


def tf_feature_spec() -> dict[str, Any]:
    """The `tf.io.parse_single_example` spec of a TFRecord shard (imports TensorFlow lazily)."""
    import tensorflow as tf

    spec: dict[str, Any] = {}
    for f in RECORD_FIELDS:
        if f.kind == "string":
            spec[f.name] = tf.io.FixedLenFeature([], tf.string)
        elif f.kind == "int64":
            spec[f.name] = tf.io.FixedLenFeature([], tf.int64)
        else:
            spec[f.name] = tf.io.VarLenFeature(tf.string)
    return spec


def validate_record(record: Mapping[str, Any]) -> None:
    """Raise ValueError unless `record` has exactly the record fields with the right types."""
    missing = set(FIELD_NAMES) - set(record)
    extra = set(record) - set(FIELD_NAMES)
    if missing or extra:
        raise ValueError(f"record fields differ from the schema: missing {sorted(missing)}, extra {sorted(extra)}")
    for f in RECORD_FIELDS:
        value = record[f.name]
        ok = (
            isinstance(value, str)
            if f.kind == "string"
            else isinstance(value, int) and not isinstance(value, bool)
            if f.kind == "int64"
            else isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise ValueError(f"record field {f.name!r} should be {f.kind}, got {type(value).__name__}")
