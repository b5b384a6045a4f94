"""TFRecord files of tf.train.Example, and prepared TFDS datasets (which are such files).

Neither TensorFlow nor tensorflow-datasets is needed: records are read with schemas/tfexample.py
(framing and CRCs checked) and a TFDS split is found from its dataset_info.json. Each file is one
read shard (no random access into a TFRecord stream).
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.sources.base import RawRow, SourceShard, source_error
from flanforge.beam_pipelines.sources.files import expand_files, open_source, relative_to
from flanforge.schemas.files import StorageError, first_line, join_path, match_files, read_bytes

# Where TFDS keeps prepared datasets when no data_dir is given (TFDS's own default).
TFDS_DEFAULT_DATA_DIR = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))


def _feature_value(feature: Any) -> Any:
    """A tf.train.Feature as a plain value: UTF-8 bytes as str, one-element lists as scalars.

    Bytes that are not UTF-8 (images, audio) stay bytes: a template that does not use them still works.
    """
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if kind == "bytes_list":
        values = [_text_or_bytes(v) for v in values]
    return values[0] if len(values) == 1 else values


def _text_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def example_to_row(serialized: bytes) -> dict[str, Any]:
    """A serialized tf.train.Example as {feature name: value}, names sorted (proto maps have no order)."""
    from flanforge.schemas.tfexample import Example  # the same message, without importing TensorFlow

    features = Example.FromString(serialized).features.feature
    return {name: _feature_value(features[name]) for name in sorted(features)}


def plan_file(whole: SourceShard) -> list[SourceShard]:
    return [whole]


def read(shard: SourceShard) -> Iterator[RawRow]:
    """Rows numbered by record. A damaged frame ends the file (the lengths that follow cannot be
    trusted); a well-framed record that is not an Example is skipped."""
    from google.protobuf.message import DecodeError

    from flanforge.schemas.tfexample import read_tfrecords

    with open_source(shard.location) as f:
        number = 0
        records = read_tfrecords(f)
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except ValueError as e:
                yield RawRow(number, None, f"damaged TFRecord, rest of the file skipped: {first_line(e, 120)}", f"record {number}")
                return
            try:
                yield RawRow(number, example_to_row(record), "", f"record {number}")
            except DecodeError as e:
                yield RawRow(number, None, f"not a tf.train.Example: {first_line(e)}", f"record {number}")
            number += 1


# -- TFDS ----------------------------------------------------------------------------------------


def _parse_tfds_name(name: str) -> tuple[str, str | None]:
    """'glue/rte:2.0.0' -> ('glue/rte', '2.0.0'); no version -> (name, None)."""
    path, _, version = name.partition(":")
    return path.strip("/"), version or None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def _tfds_version_dir(spec: TaskSpec, split: str) -> str:
    """data_dir/<dataset>[/<config>]/<version>; the newest prepared version when the name gives none."""
    src = spec.source
    data_dir = os.path.expanduser(src.data_dir or TFDS_DEFAULT_DATA_DIR)
    dataset, version = _parse_tfds_name(src.name or "")
    dataset_dir = join_path(data_dir, dataset)
    if version:
        return join_path(dataset_dir, version)
    pattern = join_path(dataset_dir, "*/dataset_info.json")
    try:
        found = [relative_to(f.path, dataset_dir).split("/") for f in match_files(pattern)]
    except StorageError as e:
        raise source_error(spec.name, split, f"TFDS dataset {src.name!r}: cannot list {pattern}: {e}") from None
    versions = sorted((parts[0] for parts in found if len(parts) == 2), key=_version_key)
    if not versions:
        raise source_error(spec.name, split, f"TFDS dataset {src.name!r}: no prepared version under {dataset_dir} (no */dataset_info.json)")
    return join_path(dataset_dir, versions[-1])


def _read_tfds_info(task: str, split: str, path: str) -> dict[str, Any]:
    try:
        return json.loads(read_bytes(path))
    except FileNotFoundError:
        raise source_error(task, split, f"{path} not found; prepare the dataset first (`tfds build`) or fix the source's name/data_dir") from None
    except (StorageError, OSError, ValueError) as e:
        raise source_error(task, split, f"cannot read {path}: {first_line(e)}") from None


def plan_tfds(spec: TaskSpec, split: str) -> list[SourceShard]:
    """Shards of a prepared TFDS split, read straight from its TFRecord files.

    dataset_info.json names the file prefix and each split's shard count, so a half-copied
    dataset fails here rather than silently building from some of its shards.
    """
    tfds_split = spec.source.splits[split]
    version_dir = _tfds_version_dir(spec, split)
    info = _read_tfds_info(spec.name, split, join_path(version_dir, "dataset_info.json"))
    file_format = info.get("fileFormat") or "tfrecord"
    if file_format != "tfrecord":
        raise source_error(spec.name, split, f"{version_dir}: TFDS file format {file_format!r}; flanforge reads 'tfrecord' datasets")
    splits = {s.get("name"): s for s in info.get("splits", [])}
    if tfds_split not in splits:
        raise source_error(spec.name, split, f"{version_dir}: no TFDS split {tfds_split!r} (has {', '.join(sorted(splits)) or 'none'})")
    prefix = info.get("name") or _parse_tfds_name(spec.source.name or "")[0].split("/")[0]
    pattern = join_path(version_dir, f"{prefix}-{tfds_split}.tfrecord-*")
    shards = [
        SourceShard(task=spec.name, split=split, kind="tfrecord", location=f.path, start=0, end=-1,
                    id_field=spec.source.id_field, id_prefix=rel, file_bytes=f.size)
        for f, rel in expand_files(spec.name, split, pattern)
    ]
    expected = len(splits[tfds_split].get("shardLengths") or [])
    if expected and len(shards) != expected:
        raise source_error(spec.name, split, f"{pattern}: found {len(shards)} of the {expected} shard files dataset_info.json lists (incomplete copy?)")
    return shards
