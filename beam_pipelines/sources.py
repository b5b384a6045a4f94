"""Reading task sources as many independent shards, each row with a stable example_id.

`plan_reads` runs on the launcher: it expands paths and globs, fails early (with the task, split
and path in the message) on missing, empty or unreadable sources, and cuts every source into
`SourceShard`s so the read parallelises across workers. `read_shard` runs on a worker and yields
rows or `ReadProblem`s (a malformed record becomes a dead letter, not a crash).

Every file is listed and opened through `storage.py`, so any path or glob may be local or
`gs://`. Formats: JSON Lines (byte-range shards), CSV, TSV, Parquet (one shard per row group),
TFRecord files of tf.train.Example (one shard per file), prepared TFDS datasets (their TFRecord
files, read directly), a `datasets` `save_to_disk` directory (local only), `datasets` hub/builder
sources (Parquet-backed ones read row group by row group, others through `load_dataset`), and the
rows embedded in a spec (`--demo`).
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Iterator, Mapping

import orjson

from flanforge.beam_pipelines.catalog import SourceSpec, TaskSpec
from flanforge.beam_pipelines.storage import FileInfo, StorageError, first_line, has_glob, is_remote, join_path, match_files, open_read

# Byte size of one JSONL read shard, and rows per shard for row-addressable sources.
JSONL_SHARD_BYTES = 8 << 20
ROWS_PER_SHARD = 50_000

FILE_KINDS = {
    ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".tfrecord": "tfrecord",
}
# TFDS and Beam name sharded TFRecord files `<name>.tfrecord-00000-of-00004`.
_SHARDED_TFRECORD = re.compile(r"\.tfrecord-\d+-of-\d+$")
# Where TFDS keeps prepared datasets when no data_dir is given (TFDS's own default).
TFDS_DEFAULT_DATA_DIR = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))


class SourceError(ValueError):
    """A source cannot be read at all (missing, empty, unknown format); raised before the pipeline runs."""


@dataclass(frozen=True)
class SourceShard:
    task: str
    split: str  # the output split the rows go to
    kind: str  # jsonl | csv | tsv | parquet | tfrecord | hf | hf_disk | samples
    location: str  # file path/URL, HF dataset path or save_to_disk directory, or "" for samples
    start: int  # byte offset (jsonl); first row (parquet: of the file, or of the HF split; hf, hf_disk, samples)
    end: int  # exclusive; -1 = to the end
    id_field: str | None = None
    id_prefix: str = ""  # the file's path relative to its glob root: keeps ids machine-independent
    row_group: int = -1  # parquet: the row group holding rows [start, end)
    hf_name: str | None = None
    hf_split: str | None = None  # the split inside the dataset (hf, hf_disk): not the output split
    data_files: Any = None
    hf_revision: str | None = None
    hf_data_dir: str | None = None
    inline_rows: tuple[dict[str, Any], ...] = ()  # kind "samples": the spec's own rows travel with the shard
    file_bytes: int = 0  # size of the file behind a file shard: sizes the render and the output at plan time

    @property
    def key(self) -> str:
        """Identity of the shard, stable across runs (used to seed round-robin offsets)."""
        return f"{self.split}:{self.id_prefix or self.location}:{self.start}"


@dataclass(frozen=True)
class SourceRow:
    task: str
    split: str
    example_id: str
    shard_key: str
    ordinal: int  # position within the shard, in read order
    row: dict[str, Any]
    position: int = -1  # where the row is in its file: byte offset (JSONL) or row number


@dataclass(frozen=True)
class ReadProblem:
    task: str
    split: str
    where: str
    error: str


def _error(task: str, split: str, message: str) -> SourceError:
    return SourceError(f"task {task} split {split}: {message}")


def kind_for_path(path: str) -> str:
    """The file kind a path's name implies (`.gz` is looked through for the text formats)."""
    name = path.rstrip("/")
    if _SHARDED_TFRECORD.search(name):
        return "tfrecord"
    _, ext = os.path.splitext(name[: -len(".gz")] if name.endswith(".gz") else name)
    kind = FILE_KINDS.get(ext.lower())
    if kind is None or (name.endswith(".gz") and kind not in ("jsonl", "csv", "tsv")):
        raise SourceError(
            f"{path}: cannot tell the format from the extension; use one of {', '.join(FILE_KINDS)} "
            f"(or .tfrecord-NNNNN-of-NNNNN) or a save_to_disk directory"
        )
    return kind


def _glob_root(pattern: str) -> str:
    """The directory part of a pattern before its first wildcard."""
    head = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    return head if head.endswith("/") else os.path.dirname(head)


def _relative(path: str, root: str) -> str:
    """path below root, '/'-separated: the part of a source's name that is the same on every machine."""
    if not root:
        return path
    if is_remote(path):
        return path[len(root):].lstrip("/") if path.startswith(root) else path
    return os.path.relpath(path, root).replace(os.sep, "/")


def expand_files(task: str, split: str, pattern: str) -> list[tuple[FileInfo, str]]:
    """(file, path relative to the glob root) for every file a path or glob names, sorted."""
    try:
        files = match_files(pattern)
    except StorageError as e:
        raise _error(task, split, f"source {pattern!r} cannot be listed: {e}") from None
    if not files:
        raise _error(task, split, f"source {pattern!r} matched no files")
    if all(f.size == 0 for f in files):
        raise _error(task, split, f"source {pattern!r} is empty ({len(files)} file(s) of 0 bytes)")
    root = _glob_root(pattern) if has_glob(pattern) else os.path.dirname(pattern)
    return [(f, _relative(f.path, root)) for f in files]


def _open(path: str) -> BinaryIO:
    """A seekable binary reader for a storage path (local or gs://) or a Hugging Face hub URL (hf://)."""
    if path.startswith("hf://"):
        from huggingface_hub import HfFileSystem

        return HfFileSystem().open(path, "rb")
    return open_read(path)


def _open_text_format(path: str) -> BinaryIO:
    """The bytes of a JSONL/CSV/TSV file, gunzipped when its name ends in .gz."""
    raw = _open(path)
    return gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw


def _starts_with(path: str, prefix: bytes) -> bool:
    with _open_text_format(path) as f:
        return f.read(64).lstrip().startswith(prefix)


def _row_ranges(n_rows: int, per_shard: int) -> list[tuple[int, int]]:
    n = max(1, math.ceil(n_rows / per_shard))
    return [(i * n_rows // n, (i + 1) * n_rows // n) for i in range(n)]


def _parquet_row_counts(path: str) -> list[int]:
    """Rows in each row group, from the file's footer only."""
    import pyarrow.parquet as pq

    with _open(path) as f:
        meta = pq.ParquetFile(f).metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def _parquet_shards(base: dict[str, Any], row_counts: list[int], first_row: int) -> list[SourceShard]:
    """One shard per non-empty row group; start/end number the rows from first_row on."""
    shards, row = [], first_row
    for group, n in enumerate(row_counts):
        if n:
            shards.append(SourceShard(start=row, end=row + n, row_group=group, **base))
        row += n
    return shards


def _plan_file(spec: TaskSpec, split: str, info: FileInfo, rel: str, kind: str) -> list[SourceShard]:
    base = dict(
        task=spec.name, split=split, kind=kind, location=info.path, id_field=spec.source.id_field, id_prefix=rel, file_bytes=info.size
    )
    if kind == "jsonl" and _starts_with(info.path, b"["):
        raise _error(spec.name, split, f"{info.path} is a JSON array; flanforge reads JSON Lines (one object per line)")
    if kind == "jsonl" and not info.path.endswith(".gz"):
        n = max(1, math.ceil(info.size / JSONL_SHARD_BYTES))
        return [SourceShard(start=i * info.size // n, end=(i + 1) * info.size // n, **base) for i in range(n)]
    if kind == "parquet":
        return _parquet_shards(base, _parquet_row_counts(info.path), 0)
    # csv/tsv: quoted newlines make byte ranges unsafe; tfrecord, gzip: no random access. One shard per file.
    return [SourceShard(start=0, end=-1, **base)]


def plan_file_source(spec: TaskSpec, split: str, pattern: str, kind: str | None = None) -> list[SourceShard]:
    """Shards of the files a path or glob names (or of a local save_to_disk directory)."""
    if kind == "hf_disk" or (not kind and not is_remote(pattern) and os.path.isdir(pattern)):
        return plan_hf_disk_source(spec, split, pattern, split)
    shards: list[SourceShard] = []
    for info, rel in expand_files(spec.name, split, pattern):
        try:
            shards += _plan_file(spec, split, info, rel, kind or kind_for_path(info.path))
        except SourceError:
            raise
        except (OSError, ValueError) as e:  # pyarrow/Beam/gzip: the file exists but cannot be read
            raise _error(spec.name, split, f"cannot read {info.path}: {first_line(e)}") from None
    if not shards:
        raise _error(spec.name, split, f"source {pattern!r} has no rows")
    return shards


def _load_hf_disk(path: str, split: str):
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise SourceError(f"{path}: saved DatasetDict has splits {list(ds)}, not {split!r}")
        ds = ds[split]
    return ds


def plan_hf_disk_source(spec: TaskSpec, split: str, directory: str, source_split: str) -> list[SourceShard]:
    """Row-range shards of a local save_to_disk directory; the source split travels on the shard."""
    if is_remote(directory):
        raise _error(
            spec.name, split,
            f"{directory}: save_to_disk directories are read from local disk only; copy it locally, "
            f"or export it with Dataset.to_parquet() and point the task at the .parquet files",
        )
    base = dict(
        task=spec.name, split=split, kind="hf_disk", location=directory, id_field=spec.source.id_field,
        id_prefix=os.path.basename(directory.rstrip(os.sep)), hf_split=source_split,
    )
    try:
        ds = _load_hf_disk(directory, source_split)
    except SourceError as e:
        raise _error(spec.name, split, str(e)) from None
    except Exception as e:  # datasets raises many types; all mean "not a readable save_to_disk directory"
        raise _error(spec.name, split, f"cannot load save_to_disk directory {directory}: {type(e).__name__}: {first_line(e)}") from None
    return _plan_hf(spec, split, base, ds)


def _hf_args(shard: SourceShard) -> dict[str, Any]:
    return dict(path=shard.location, name=shard.hf_name, data_files=shard.data_files, revision=shard.hf_revision, data_dir=shard.hf_data_dir)


def _load_hf(shard: SourceShard):
    import datasets

    return datasets.load_dataset(**_hf_args(shard), split=shard.hf_split)


def _hf_parquet_files(shard: SourceShard) -> list[str] | None:
    """The split's data files when they are all Parquet (hf:// URLs or local paths), else None.

    Resolving data files reads only the repository listing, not the data, so the launcher can plan
    one shard per row group instead of loading the whole split.
    """
    import datasets

    builder = datasets.load_dataset_builder(**_hf_args(shard))
    files = [str(f) for f in (builder.config.data_files or {}).get(shard.hf_split, [])]
    return files if files and all(f.endswith(".parquet") for f in files) else None


def _plan_hf(spec: TaskSpec, split: str, base: dict[str, Any], ds: Any) -> list[SourceShard]:
    if len(ds) == 0:
        raise _error(spec.name, split, f"source {base['location']!r} has no rows")
    return [SourceShard(start=a, end=b, **base) for a, b in _row_ranges(len(ds), ROWS_PER_SHARD)]


def _plan_hf_parquet(spec: TaskSpec, split: str, base: dict[str, Any], files: list[str]) -> list[SourceShard]:
    """Row-group shards numbered across the split's files in order, so ids equal load_dataset's row numbers."""
    shards: list[SourceShard] = []
    first_row = 0
    for path in files:
        counts = _parquet_row_counts(path)
        shards += _parquet_shards({**base, "kind": "parquet", "location": path}, counts, first_row)
        first_row += sum(counts)
    if not shards:
        raise _error(spec.name, split, f"source {base['location']!r} has no rows")
    return shards


def plan_hf_source(spec: TaskSpec, split: str) -> list[SourceShard]:
    src = spec.source
    hf_split = src.splits[split]
    base = dict(
        task=spec.name, split=split, kind="hf", location=src.path or "", id_field=src.id_field, id_prefix=hf_split,
        hf_name=src.name, hf_split=hf_split, data_files=src.data_files, hf_revision=src.revision, hf_data_dir=src.data_dir,
    )
    probe = SourceShard(start=0, end=-1, **base)
    try:
        files = _hf_parquet_files(probe)
        return _plan_hf_parquet(spec, split, base, files) if files else _plan_hf(spec, split, base, _load_hf(probe))
    except SourceError:
        raise
    except Exception as e:  # datasets/huggingface_hub/pyarrow raise many types; all mean "cannot read this source"
        raise _error(
            spec.name, split,
            f"cannot load HF dataset {src.path!r} (config {src.name!r}, split {hf_split!r}): {type(e).__name__}: {first_line(e)}. "
            f"Offline? Point the task at local files with --source {spec.name}:{split}=PATH",
        ) from None


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
        found = [_relative(f.path, dataset_dir).split("/") for f in match_files(pattern)]
    except StorageError as e:
        raise _error(spec.name, split, f"TFDS dataset {src.name!r}: cannot list {pattern}: {e}") from None
    versions = sorted((parts[0] for parts in found if len(parts) == 2), key=_version_key)
    if not versions:
        raise _error(spec.name, split, f"TFDS dataset {src.name!r}: no prepared version under {dataset_dir} (no */dataset_info.json)")
    return join_path(dataset_dir, versions[-1])


def _read_tfds_info(task: str, split: str, path: str) -> dict[str, Any]:
    try:
        if match_files(path):
            with open_read(path) as f:
                return json.loads(f.read())
    except (StorageError, OSError, ValueError) as e:
        raise _error(task, split, f"cannot read {path}: {first_line(e)}") from None
    raise _error(task, split, f"{path} not found; prepare the dataset first (`tfds build`) or fix the source's name/data_dir")


def plan_tfds_source(spec: TaskSpec, split: str) -> list[SourceShard]:
    """Shards of a prepared TFDS split, read straight from its TFRecord files (no tensorflow-datasets needed).

    dataset_info.json names the file prefix and each split's shard count, so a half-copied
    dataset fails here rather than silently building from some of its shards.
    """
    tfds_split = spec.source.splits[split]
    version_dir = _tfds_version_dir(spec, split)
    info = _read_tfds_info(spec.name, split, join_path(version_dir, "dataset_info.json"))
    file_format = info.get("fileFormat") or "tfrecord"
    if file_format != "tfrecord":
        raise _error(spec.name, split, f"{version_dir}: TFDS file format {file_format!r}; flanforge reads 'tfrecord' datasets")
    splits = {s.get("name"): s for s in info.get("splits", [])}
    if tfds_split not in splits:
        raise _error(spec.name, split, f"{version_dir}: no TFDS split {tfds_split!r} (has {', '.join(sorted(splits)) or 'none'})")
    prefix = info.get("name") or _parse_tfds_name(spec.source.name or "")[0].split("/")[0]
    pattern = join_path(version_dir, f"{prefix}-{tfds_split}.tfrecord-*")
    shards = plan_file_source(spec, split, pattern, "tfrecord")
    expected = len(splits[tfds_split].get("shardLengths") or [])
    if expected and len(shards) != expected:
        raise _error(spec.name, split, f"{pattern}: found {len(shards)} of the {expected} shard files dataset_info.json lists (incomplete copy?)")
    return shards


def _plan_spec_source(spec: TaskSpec, split: str) -> list[SourceShard]:
    """Shards of one split as the spec's own `source` describes it."""
    src: SourceSpec = spec.source
    if src.kind == "hf":
        return plan_hf_source(spec, split)
    if src.kind == "tfds":
        return plan_tfds_source(spec, split)
    if src.kind == "hf_disk":
        return plan_hf_disk_source(spec, split, src.path or "", src.splits[split])
    return plan_file_source(spec, split, src.splits[split], src.kind)


def plan_reads(
    spec: TaskSpec, *, demo: bool, overrides: dict[str, str], splits: Mapping[str, str] | None = None
) -> list[SourceShard]:
    """Every read shard of one task.

    `overrides` maps split -> path/glob (from --source). `splits` maps the source splits to read
    to the output split they become (a held-out task reads validation as eval_zeroshot); None
    reads every split under its own name. In --demo, the spec's samples stand in for each split.
    """
    if demo and not overrides:
        wanted = splits or {"train": "train"}
        return [
            SourceShard(
                task=spec.name, split=out, kind="samples", location="", start=0, end=len(spec.samples),
                id_field=spec.source.id_field, id_prefix="sample", inline_rows=tuple(spec.samples),
            )
            for out in sorted(wanted.values())
        ]
    available = overrides or spec.source.splits
    wanted = splits or {s: s for s in available}
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise SourceError(
            f"task {spec.name}: no {', '.join(missing)} split to read (has {', '.join(sorted(available))}); "
            f"give one with --source {spec.name}:{missing[0]}=PATH"
        )
    if overrides:
        shards = [s for split, pattern in sorted(overrides.items()) if split in wanted for s in plan_file_source(spec, split, pattern)]
    else:
        shards = [s for split in sorted(wanted) for s in _plan_spec_source(spec, split)]
    return [s if wanted[s.split] == s.split else replace(s, split=wanted[s.split]) for s in shards]


def _example_id(shard: SourceShard, row: dict[str, Any], position: int) -> str:
    if shard.id_field and shard.id_field in row:
        return f"{shard.split}:{row[shard.id_field]}"
    return f"{shard.split}:{shard.id_prefix}:{position}"


# Digits mapped to one byte, so "a run of 19 digits" is a plain substring search (C speed; a regex
# scan of a long line costs more than orjson's whole parse).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


def parse_json_line(line: bytes) -> Any:
    """One JSON Lines record, as `json.loads` reads it, at orjson's speed.

    orjson parses ~3x faster but turns integers beyond 64 bits into floats and rejects a few
    things the standard parser accepts (NaN, 1e400, lone surrogates); a line with a run of 19 or
    more digits, or one orjson rejects, goes to `json.loads`, so the result (or the error
    message) is always the standard library's."""
    if _LONG_DIGIT_RUN not in line.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line)


def _read_jsonl(shard: SourceShard) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(byte offset, row or None, error) for lines that start inside [start, end)."""
    end = math.inf if shard.end < 0 else shard.end
    with _open_text_format(shard.location) as f:
        if shard.start > 0:
            f.seek(shard.start - 1)
            f.readline()  # finish the line that straddles the boundary: it belongs to the previous shard
        while True:
            offset = f.tell()
            if offset >= end:
                return
            line = f.readline()
            if not line:
                return
            if not line.strip():
                continue
            try:
                row = parse_json_line(line)
            except ValueError as e:
                yield offset, None, f"malformed JSON: {e}"
                continue
            if not isinstance(row, dict):
                yield offset, None, f"expected a JSON object, got {type(row).__name__}"
                continue
            yield offset, row, ""


def _read_delimited(shard: SourceShard) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    import pyarrow.csv as pacsv

    bad: list[str] = []

    def on_invalid(row: Any) -> str:
        bad.append(f"line {row.number}: expected {row.expected_columns} columns, got {row.actual_columns}")
        return "skip"

    parse = pacsv.ParseOptions(
        delimiter="\t" if shard.kind == "tsv" else ",",
        quote_char=False if shard.kind == "tsv" else '"',
        invalid_row_handler=on_invalid,
    )
    try:
        with _open_text_format(shard.location) as f:
            table = pacsv.read_csv(f, parse_options=parse)
    except Exception as e:  # a file pyarrow cannot parse at all: one dead letter for the file
        yield -1, None, f"cannot parse {shard.kind.upper()}: {e}"
        return
    for message in bad:
        yield -1, None, message
    for i, row in enumerate(table.to_pylist()):
        yield i, row, ""


def _read_parquet(shard: SourceShard) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    import pyarrow.parquet as pq

    with _open(shard.location) as f:
        rows = pq.ParquetFile(f).read_row_group(shard.row_group).to_pylist()
    for i, row in enumerate(rows, start=shard.start):
        yield i, row, ""


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


def _read_tfrecord(shard: SourceShard) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(record number, row or None, error). A record whose framing is corrupt ends the file: the
    lengths that follow cannot be trusted; a well-framed record that is not an Example is skipped."""
    from apache_beam.io.tfrecordio import _TFRecordUtil
    from google.protobuf.message import DecodeError

    with _open(shard.location) as f:
        number = 0
        while True:
            offset = f.tell()
            try:
                record = _TFRecordUtil.read_record(f)
            except ValueError as e:
                yield number, None, f"corrupt TFRecord at byte {offset}, rest of the file skipped: {first_line(e, 120)}"
                return
            if record is None:
                return
            try:
                yield number, example_to_row(record), ""
            except DecodeError as e:
                yield number, None, f"not a tf.train.Example: {first_line(e)}"
            number += 1


def _read_rows(shard: SourceShard) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    if shard.kind == "jsonl":
        yield from _read_jsonl(shard)
    elif shard.kind in ("csv", "tsv"):
        yield from _read_delimited(shard)
    elif shard.kind == "parquet":
        yield from _read_parquet(shard)
    elif shard.kind == "tfrecord":
        yield from _read_tfrecord(shard)
    elif shard.kind == "samples":
        for i, row in enumerate(shard.inline_rows):
            yield i, dict(row), ""
    elif shard.kind in ("hf", "hf_disk"):
        ds = _load_hf(shard) if shard.kind == "hf" else _load_hf_disk(shard.location, shard.hf_split)
        for i, row in enumerate(ds.select(range(shard.start, shard.end)), start=shard.start):
            yield i, row, ""
    else:
        raise AssertionError(f"unknown source kind {shard.kind}")


def read_shard(shard: SourceShard) -> Iterator[SourceRow | ReadProblem]:
    """Rows of one shard in read order; unparseable records come out as ReadProblems."""
    ordinal = 0
    for position, row, error in _read_rows(shard):
        if row is None:
            where = f"{shard.id_prefix or shard.location}" + (f" at {position}" if position >= 0 else "")
            yield ReadProblem(shard.task, shard.split, where, error)
            continue
        yield SourceRow(shard.task, shard.split, _example_id(shard, row, position), shard.key, ordinal, row, position)
        ordinal += 1


def read_rows_at(shard: SourceShard, wanted: Mapping[int, int]) -> Iterator[SourceRow]:
    """The rows at these positions (position -> ordinal, both from an earlier `read_shard`).

    A plain JSONL file seeks to each row and parses only it, so a second pass over a shard costs
    what it keeps, not what the shard holds; other formats are read again and filtered."""
    if shard.kind != "jsonl" or shard.location.endswith(".gz"):
        for item in read_shard(shard):
            if isinstance(item, SourceRow) and item.position in wanted:
                yield item
        return
    with _open(shard.location) as f:
        for position in sorted(wanted):
            f.seek(position)
            row = parse_json_line(f.readline())
            yield SourceRow(shard.task, shard.split, _example_id(shard, row, position), shard.key, wanted[position], row, position)
