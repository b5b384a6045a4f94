"""WriteShards: records -> split=…/cluster=…/part-SSSSS-of-NNNNN.{tfrecord,parquet}.

A shard's rows follow from content hashes alone (bucket = hash mod shard count) and are sorted by
content hash inside the shard, so the bytes of every file are the same whatever the runner,
worker count or arrival order. The shard count of a (split, cluster) comes from its size and the
target shard size. Every expected shard is written, even an empty one, so `-of-NNNNN` is honest.
"""
from __future__ import annotations

import io
import math
import os
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam

from flanforge.beam_pipelines.counting import COUNTS, CountingDoFn
from flanforge.beam_pipelines.hashing import bucket_of
from flanforge.beam_pipelines.storage import join_path, write_bytes
from flanforge.schemas.records import RECORD_FIELDS, arrow_schema

FORMATS = {"tfrecord": "tfrecord", "parquet": "parquet"}  # format -> file extension
ROW_OVERHEAD_BYTES = 120  # ids and metadata per row, for sizing shards


def shard_path(fmt: str, split: str, cluster: str, index: int, count: int) -> str:
    return f"{fmt}/split={split}/cluster={cluster}/part-{index:05d}-of-{count:05d}.{FORMATS[fmt]}"


def approx_bytes(record: Mapping[str, Any]) -> int:
    return len(record["inputs"]) + len(record["targets"]) + ROW_OVERHEAD_BYTES


def shard_count(total_bytes: int, target_shard_bytes: int) -> int:
    return max(1, math.ceil(total_bytes / target_shard_bytes))


def encode_parquet(records: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(records, schema=arrow_schema())
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class TFExampleEncoder:
    """Serialises records as tf.train.Example inside TFRecord framing (imports TensorFlow once)."""

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of build logs
        from apache_beam.io.tfrecordio import _TFRecordUtil  # Beam's TFRecord framing (length + masked CRC32C)
        from tensorflow.core.example import example_pb2

        self._example_class = example_pb2.Example
        self._frame = _TFRecordUtil.write_record

    def example(self, record: Mapping[str, Any]) -> bytes:
        # Filling the message's repeated fields in place is ~3x faster than building nested
        # tf.train.Feature objects from keyword arguments, and serialises to the same bytes.
        example = self._example_class()
        features = example.features.feature
        for f in RECORD_FIELDS:
            value = record[f.name]
            if f.kind == "int64":
                features[f.name].int64_list.value.append(value)
            elif f.kind == "string":
                features[f.name].bytes_list.value.append(value.encode("utf-8"))
            else:
                values = features[f.name].bytes_list
                values.SetInParent()  # an empty list is still a bytes_list, as readers' specs expect
                values.value.extend(v.encode("utf-8") for v in value)
        return example.SerializeToString(deterministic=True)

    def encode(self, records: Iterable[Mapping[str, Any]]) -> bytes:
        buf = io.BytesIO()
        for r in records:
            self._frame(buf, self.example(r))
        return buf.getvalue()


class _WriteShardFn(CountingDoFn):
    def __init__(self, output: str, formats: tuple[str, ...]):
        self._output = output
        self._formats = formats

    def setup(self) -> None:
        self._tf = TFExampleEncoder() if "tfrecord" in self._formats else None

    def process(self, element: tuple[tuple[str, str, int, int], Mapping[str, Iterable]]) -> Iterator[dict[str, Any]]:
        (split, cluster, index, count), groups = element
        records = sorted(groups["rows"], key=lambda r: r["content_hash"])
        for fmt in self._formats:
            data = self._tf.encode(records) if fmt == "tfrecord" else encode_parquet(records)
            rel = shard_path(fmt, split, cluster, index, count)
            digest = write_bytes(join_path(self._output, rel), data)
            yield {"path": rel, "format": fmt, "split": split, "cluster": cluster, "rows": len(records), "bytes": len(data), "sha256": digest}
        for r in records:
            self.count(r["task"], "written")
            self.count(r["task"], f"written@{r['split']}")


class WriteShards(beam.PTransform):
    """records -> shard infos (one dict per file written) + per-task written counts."""

    def __init__(self, output: str, formats: tuple[str, ...], target_shard_bytes: int):
        super().__init__()
        self._output = output
        self._formats = formats
        self._target = target_shard_bytes

    def expand(self, records: beam.PCollection) -> Any:
        target = self._target
        counts = (
            records
            | "SizeOf" >> beam.Map(lambda r: ((r["split"], r["cluster"]), approx_bytes(r)))
            | "SizePerPartition" >> beam.CombinePerKey(sum)
            | "ShardCount" >> beam.Map(lambda kv: (kv[0], shard_count(kv[1], target)))
        )
        keyed = records | "KeyByShard" >> beam.Map(
            lambda r, n: ((r["split"], r["cluster"], bucket_of(r["content_hash"], n[(r["split"], r["cluster"])]), n[(r["split"], r["cluster"])]), r),
            n=beam.pvalue.AsDict(counts),
        )
        expected = counts | "EveryShard" >> beam.FlatMap(lambda kv: [((kv[0][0], kv[0][1], i, kv[1]), None) for i in range(kv[1])])
        return (
            {"rows": keyed, "expected": expected}
            | "GroupShards" >> beam.CoGroupByKey()
            | "Write" >> beam.ParDo(_WriteShardFn(self._output, self._formats)).with_outputs(COUNTS, main="shards")
        )
