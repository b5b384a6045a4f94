"""Spill files: rendered records on disk, in Arrow IPC batches grouped by output shard.

Rendering writes its records here instead of sending them through Beam one by one. Each read
shard writes one Arrow IPC file; records are buffered per destination (the output shard that
`layout.py` assigns from the content hash) and flushed as one record batch per destination, so a
writer later reads exactly the batches of its shard and nothing else. What crosses the shuffle is a
`SpillRef` per (read shard, destination): a path and batch numbers. Beam's own file sinks work the
same way (data to files, file names through the graph).

Besides the records, the writer keeps a `HashSummary` of the shard: the 128-bit content hashes of
its records (16 bytes each), and for capped candidates their template, example id and sampling
key. Dedup across clusters and the caps are decided from summaries alone (`dedup.py`).

When the build is incremental, spill files live in the render cache, so keeping the cache costs
nothing extra: the cache *is* the spilled render.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import xxhash

from flanforge.beam_pipelines.layout import Destination, ShardLayout
from flanforge.beam_pipelines.storage import open_write
from flanforge.schemas.files import is_remote, open_input
from flanforge.schemas.records import Record, arrow_schema

SAMPLE_KEY = "sample_key"  # spill-only column: the cap's sampling key (0 for uncapped records)
FLUSH_ROWS = 20_000  # records buffered per read shard before a flush: bounds a render worker's memory


def spill_schema() -> pa.Schema:
    return arrow_schema().append(pa.field(SAMPLE_KEY, pa.uint64(), nullable=False))


@dataclass(frozen=True)
class SpillRef:
    """Where one read shard's records for one output shard are: batches of one spill file."""

    path: str
    batches: tuple[int, ...]
    rows: int


@dataclass(frozen=True)
class HashSummary:
    """The content hashes of one read shard's records (as two uint64 halves), and for capped
    candidates the fields the cap decides on. Small: 16 bytes per record, more only for candidates."""

    task: str
    split: str
    hi: np.ndarray
    lo: np.ndarray
    candidate_index: np.ndarray  # positions (into hi/lo) of capped candidates
    template_ids: tuple[str, ...] = ()
    example_ids: tuple[str, ...] = ()
    sample_keys: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf, task=np.array(self.task), split=np.array(self.split), hi=self.hi, lo=self.lo,
            candidate_index=self.candidate_index, template_ids=np.array(self.template_ids, dtype=str),
            example_ids=np.array(self.example_ids, dtype=str), sample_keys=np.array(self.sample_keys, dtype=np.uint64),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "HashSummary":
        z = np.load(io.BytesIO(data), allow_pickle=False)
        return cls(
            task=str(z["task"]), split=str(z["split"]), hi=z["hi"], lo=z["lo"], candidate_index=z["candidate_index"],
            template_ids=tuple(z["template_ids"].tolist()), example_ids=tuple(z["example_ids"].tolist()),
            sample_keys=tuple(int(k) for k in z["sample_keys"]),
        )


def file_digest(path: str) -> str:
    """xxh3-128 of a local file, read in large blocks (GB/s: a checksum for cache entries, not a defence)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def hash_halves(hex_hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """128-bit hex digests -> (high, low) uint64 arrays; high is what `bucket_of` reads."""
    if not hex_hashes:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    both = np.frombuffer(bytes.fromhex("".join(hex_hashes)), dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return both[:, 0].copy(), both[:, 1].copy()


class SpillWriter:
    """Buffers one read shard's records per destination and writes them to one Arrow IPC file."""

    def __init__(self, path: str, layout: ShardLayout, task: str, split: str, flush_rows: int = FLUSH_ROWS):
        self._path = path
        self._layout = layout
        self._task = task
        self._split = split
        self._flush_rows = flush_rows
        self._schema = spill_schema()
        self._buffers: dict[Destination, list[dict[str, Any]]] = defaultdict(list)
        self._buffered = 0
        self._refs: dict[Destination, list[int]] = defaultdict(list)
        self._ref_rows: dict[Destination, int] = defaultdict(int)
        self._batches = 0
        self._hashes: list[str] = []  # since the last flush; earlier ones are packed in _hash_parts
        self._hash_parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._records = 0
        self._candidates: list[int] = []
        self._candidate_fields: list[tuple[str, str, int]] = []
        self._local: str | None = None  # where the IPC file is written (a temp file for remote paths)
        self._sink: Any = None
        self._writer: Any = None
        self.digest = ""  # after close: xxh3-128 of the file written ("" when there was nothing to write)

    def add(self, record: Record, sample_key: int | None = None) -> None:
        """Buffer one record (it is kept, not copied); `sample_key` marks it as a capped candidate."""
        record[SAMPLE_KEY] = sample_key or 0
        self._buffers[self._layout.destination(record["split"], record["cluster"], record["content_hash"])].append(record)
        if sample_key is not None:
            self._candidates.append(self._records)
            self._candidate_fields.append((record["template_id"], record["example_id"], sample_key))
        self._hashes.append(record["content_hash"])
        self._records += 1
        self._buffered += 1
        if self._buffered >= self._flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        if self._writer is None:
            self._open()
        for dest in sorted(self._buffers):
            records = self._buffers[dest]
            self._writer.write_batch(pa.RecordBatch.from_pylist(records, schema=self._schema))
            self._refs[dest].append(self._batches)
            self._ref_rows[dest] += len(records)
            self._batches += 1
        self._buffers.clear()
        self._buffered = 0
        self._hash_parts.append(hash_halves(self._hashes))  # 16 bytes a record from here on
        self._hashes = []

    def _open(self) -> None:
        if is_remote(self._path):
            fd, self._local = tempfile.mkstemp(suffix=".arrow")
            os.close(fd)
        else:
            self._local = self._path
            os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
        self._sink = pa.OSFile(self._local, "wb")
        self._writer = pa.ipc.new_file(self._sink, self._schema)

    def close(self) -> tuple[list[tuple[Destination, SpillRef]], HashSummary]:
        """Write what is buffered, finish the file (uploading it if remote); refs and the summary."""
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self.digest = file_digest(self._local)  # while the file is local (and in the page cache)
            if self._local != self._path:
                with open(self._local, "rb") as src, open_write(self._path) as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
                os.remove(self._local)
        refs = [(dest, SpillRef(self._path, tuple(b), self._ref_rows[dest])) for dest, b in sorted(self._refs.items())]
        hi = np.concatenate([h for h, _ in self._hash_parts]) if self._hash_parts else np.zeros(0, np.uint64)
        lo = np.concatenate([low for _, low in self._hash_parts]) if self._hash_parts else np.zeros(0, np.uint64)
        templates, examples, keys = zip(*self._candidate_fields) if self._candidate_fields else ((), (), ())
        summary = HashSummary(
            self._task, self._split, hi, lo, np.array(self._candidates, dtype=np.int64), tuple(templates), tuple(examples), tuple(keys)
        )
        return refs, summary


def read_spilled(refs: Iterable[SpillRef]) -> pa.Table:
    """The records a set of refs points at, as one table with the spill schema."""
    by_path: dict[str, list[int]] = defaultdict(list)
    for ref in refs:
        by_path[ref.path].extend(ref.batches)
    schema = spill_schema()
    batches: list[pa.RecordBatch] = []
    for path in sorted(by_path):
        # Read into memory (not memory-mapped): the batches must outlive the open file.
        source = pa.OSFile(path, "r") if not is_remote(path) else pa.PythonFile(open_input(path), mode="r")
        with source:
            reader = pa.ipc.open_file(source)
            batches += [reader.get_batch(i) for i in sorted(by_path[path])]
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
