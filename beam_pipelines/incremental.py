"""Incremental rebuilds: keep each task's rendered records, reuse them while the task is unchanged.

A build renders every task, then deduplicates and balances across all of them. Rendering is the
per-task part, so it is what gets cached: for every task the build writes its rendered records,
its read/render dead letters and its read/render counts under
`<output>/.flanforge_cache/<task>/<fingerprint>/`, and an `index.json` last, which is the entry's
commit point (an entry without one is ignored and cleared).

The fingerprint hashes everything rendering depends on: the parsed spec, each planned read shard
with the size and modification time of the files behind it, the render settings of the config,
and the flanforge version. On the next build into the same output, a task whose fingerprint has
an index is not read or rendered again: its cached records join the freshly rendered ones *before*
Deduplicate and Balance, which always run over every task, so cross-task dedup, caps and shard
layout come out exactly as in a clean build.

The cache directory starts with a dot so that pyarrow datasets and HF `datasets` skip it when
pointed at the output root.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import pyarrow.parquet as pq
import xxhash
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.counting import COUNTS, DEAD_LETTERS
from flanforge.beam_pipelines.dead_letters import encode_dead_letters
from flanforge.beam_pipelines.shards import encode_parquet
from flanforge.beam_pipelines.sources import SourceShard
from flanforge.beam_pipelines.storage import delete, is_remote, join_path, match_files, open_read, write_bytes

CACHE_DIR = ".flanforge_cache"
INDEX_NAME = "index.json"
# The counters produced before Deduplicate: exactly what a cached task must replay.
CACHED_COUNTERS = ("read", "read_errors", "filtered", "template_applications", "rendered", "failed")
# Config fields that change what rendering produces; the rest (caps, formats, shard size) act later.
RENDER_SETTINGS = ("template_mode", "seed", "options_variants", "few_shot", "few_shot_separator", "demo")
# Records per cache file: bounds a writer's memory and keeps the re-read parallel.
CACHE_FILE_ROWS = 50_000
_NOT_STATTED = ("samples", "hf")  # spec rows (in the spec already) and hub ids (named by id/revision)


def _statted(shard: SourceShard) -> bool:
    """Local and gs:// files are identified by size and mtime; hub files by their URL, which
    `datasets` resolves to a commit (hf://datasets/<id>@<sha>/...)."""
    return shard.kind not in _NOT_STATTED and (not is_remote(shard.location) or shard.location.startswith("gs://"))


@dataclass(frozen=True)
class CacheEntry:
    """A task's committed render output, as its index.json lists it."""

    task: str
    fingerprint: str
    record_files: tuple[str, ...]  # paths relative to the output root
    dead_letter_files: tuple[str, ...]
    counts: Mapping[str, int]


@dataclass(frozen=True)
class CachePlan:
    """Every task's fingerprint, and the committed entries this build reuses instead of rendering."""

    fingerprints: Mapping[str, str]
    reused: tuple[CacheEntry, ...] = ()
    write: bool = True  # keep this build's renders for the next one

    @property
    def reused_tasks(self) -> frozenset[str]:
        return frozenset(e.task for e in self.reused)

    @property
    def to_render(self) -> dict[str, str]:
        """fingerprint of each task this build reads and renders (and then caches)."""
        return {t: fp for t, fp in self.fingerprints.items() if t not in self.reused_tasks}


def plan_cache(output: str, fingerprints: Mapping[str, str], *, incremental: bool) -> CachePlan:
    """Find the reusable entries and clear the rest of these tasks' entries (stale or unfinished).

    Not incremental: reuse nothing, keep nothing, and leave no entry of these tasks behind."""
    found = [load_entry(output, task, fp) for task, fp in sorted(fingerprints.items())] if incremental else []
    plan = CachePlan(dict(fingerprints), tuple(e for e in found if e is not None), write=incremental)
    discard_entries(output, {t: fingerprints[t] for t in plan.reused_tasks}, keep_current=True)
    discard_entries(output, plan.to_render, keep_current=False)
    return plan


def entry_dir(task: str, fingerprint: str) -> str:
    return f"{CACHE_DIR}/{task}/{fingerprint}"


def _file_stats(location: str) -> list[tuple[str, int, float]]:
    """(name, size, mtime) of the files behind a shard's location; a local directory lists its files."""
    if not is_remote(location) and os.path.isdir(location):
        found = []
        for folder, _, names in sorted(os.walk(location)):
            for name in sorted(names):
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, location), os.path.getsize(path), os.path.getmtime(path)))
        return found
    return [(f.path, f.size, f.mtime) for f in match_files(location)]


def task_fingerprint(spec: TaskSpec, shards: Iterable[SourceShard], config: BuildConfig, version: str) -> str:
    """Hash of everything the task's rendered records depend on (see the module docstring)."""
    shard_rows = []
    stats: dict[str, list[tuple[str, int, float]]] = {}  # a big file has many shards: list it once
    for shard in sorted(shards, key=lambda s: s.key):
        described = {k: v for k, v in dataclasses.asdict(shard).items() if k != "inline_rows"}
        if _statted(shard) and shard.location not in stats:
            stats[shard.location] = _file_stats(shard.location)
        shard_rows.append([described, stats.get(shard.location, [])])
    spec_fields = {k: v for k, v in dataclasses.asdict(spec).items() if k != "path"}
    settings = {k: getattr(config, k) for k in RENDER_SETTINGS}
    payload = json.dumps([version, spec_fields, shard_rows, settings], sort_keys=True, default=repr, ensure_ascii=False)
    return xxhash.xxh3_128_hexdigest(payload.encode("utf-8"))


def load_entry(output: str, task: str, fingerprint: str) -> CacheEntry | None:
    """The committed entry for this fingerprint, or None (never built, or its build did not finish)."""
    index = join_path(output, f"{entry_dir(task, fingerprint)}/{INDEX_NAME}")
    if not match_files(index):
        return None
    with open_read(index) as f:
        data = json.loads(f.read())
    return CacheEntry(
        task=task,
        fingerprint=fingerprint,
        record_files=tuple(data["record_files"]),
        dead_letter_files=tuple(data["dead_letter_files"]),
        counts=data["counts"],
    )


def _entry_files(output: str, task: str) -> dict[str, list[str]]:
    """fingerprint -> files under it, for every cache entry of a task (committed or not)."""
    by_fingerprint: dict[str, list[str]] = collections.defaultdict(list)
    for f in match_files(join_path(output, f"{CACHE_DIR}/{task}/*/*")):
        by_fingerprint[f.path.rsplit("/", 2)[-2]].append(f.path)
    return by_fingerprint


def discard_entries(output: str, fingerprints: Mapping[str, str], *, keep_current: bool) -> None:
    """Delete a task's cache entries other than its current one (or all of them, keep_current=False)."""
    stale = [
        (join_path(output, entry_dir(task, fingerprint)), paths)
        for task, current in fingerprints.items()
        for fingerprint, paths in _entry_files(output, task).items()
        if not (keep_current and fingerprint == current)
    ]
    # Object stores have no directories to remove; on local disk the entry's folder goes as a whole.
    targets = [p for _, paths in stale for p in paths] if is_remote(output) else [folder for folder, _ in stale]
    delete(targets)


def index_bytes(files: Iterable[Mapping[str, Any]], counts: Mapping[str, int]) -> bytes:
    files = sorted(files, key=lambda f: f["path"])
    return json.dumps(
        {
            "record_files": [f["path"] for f in files if f["kind"] == "records"],
            "dead_letter_files": [f["path"] for f in files if f["kind"] == "dead_letters"],
            "counts": {c: counts.get(c, 0) for c in CACHED_COUNTERS},
        },
        indent=2,
        sort_keys=True,
    ).encode("utf-8")


def _global(value: Any) -> WindowedValue:
    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class _WriteCacheFilesFn(beam.DoFn):
    """Buffers a bundle's items (records or dead letters) per task; writes them as content-addressed files.

    Applied straight to the Render outputs, one instance per kind, so caching adds one cheap step
    per rendered record rather than a tag-and-flatten chain (Beam's per-element cost dominates)."""

    def __init__(self, output: str, fingerprints: Mapping[str, str], kind: str):
        self._output = output
        self._fingerprints = dict(fingerprints)
        self._kind = kind

    def start_bundle(self) -> None:
        self._buffers: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)

    def process(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        buffer = self._buffers[item["task"]]
        buffer.append(item)
        if len(buffer) >= CACHE_FILE_ROWS:
            yield self._flush(item["task"])

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for task in sorted(self._buffers):
            if self._buffers[task]:
                yield _global(self._flush(task))

    def _flush(self, task: str) -> dict[str, Any]:
        items = self._buffers.pop(task)
        records = self._kind == "records"
        data = encode_parquet(items) if records else encode_dead_letters(items)
        # Named by content: a retried bundle rewrites the same file instead of adding a copy.
        rel = f"{entry_dir(task, self._fingerprints[task])}/{self._kind}-{xxhash.xxh3_128_hexdigest(data)}.{'parquet' if records else 'jsonl'}"
        write_bytes(join_path(self._output, rel), data)
        return {"task": task, "kind": self._kind, "path": rel, "rows": len(items)}


class WriteRenderCache(beam.PTransform):
    """(rendered records, read/render dead letters, read/render counts) -> cache entries, index last."""

    def __init__(self, output: str, fingerprints: Mapping[str, str]):
        super().__init__()
        self._output = output
        self._fingerprints = dict(fingerprints)

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection, beam.PCollection]) -> beam.PCollection:
        records, dead, counts = inputs
        output, fingerprints = self._output, self._fingerprints
        files = (
            records | "WriteRecordFiles" >> beam.ParDo(_WriteCacheFilesFn(output, fingerprints, "records")),
            dead | "WriteDeadLetterFiles" >> beam.ParDo(_WriteCacheFilesFn(output, fingerprints, "dead_letters")),
        ) | "Files" >> beam.Flatten()

        def write_index(task: str, file_list: list[dict[str, Any]], count_list: list) -> Iterator[str]:
            counts: collections.Counter[str] = collections.Counter()
            for (t, counter), n in count_list:
                if t == task:
                    counts[counter] += n
            rel = f"{entry_dir(task, fingerprints[task])}/{INDEX_NAME}"
            write_bytes(join_path(output, rel), index_bytes((f for f in file_list if f["task"] == task), counts))
            yield rel

        return (
            records.pipeline
            | "Tasks" >> beam.Create(sorted(fingerprints))
            | "WriteIndex" >> beam.FlatMap(
                write_index, file_list=beam.pvalue.AsList(files), count_list=beam.pvalue.AsList(counts)
            )
        )


def _read_cache_file(element: tuple[str, str]) -> Iterator[Any]:
    kind, path = element
    with open_read(path) as f:
        data = f.read()
    if kind == "records":
        yield from pq.read_table(io.BytesIO(data)).to_pylist()
    else:
        for line in data.decode("utf-8").splitlines():
            if line:
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, json.loads(line))


class ReadRenderCache(beam.PTransform):
    """Cache entries -> records (main) + dead letters + counts, as Render would have emitted them."""

    def __init__(self, output: str, entries: Iterable[CacheEntry]):
        super().__init__()
        self._output = output
        self._entries = sorted(entries, key=lambda e: e.task)

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:
        files = [
            (kind, join_path(self._output, rel))
            for e in self._entries
            for kind, rels in (("records", e.record_files), ("dead_letters", e.dead_letter_files))
            for rel in rels
        ]
        read = (
            pbegin
            | "Files" >> beam.Create(files)
            | "Spread" >> beam.Reshuffle()
            | "ReadFile" >> beam.FlatMap(_read_cache_file).with_outputs(DEAD_LETTERS, main="records")
        )
        counts = pbegin | "Counts" >> beam.Create(
            [((e.task, counter), n) for e in self._entries for counter, n in sorted(e.counts.items())]
        )
        return {"records": read["records"], DEAD_LETTERS: read[DEAD_LETTERS], COUNTS: counts}
