"""Incremental rebuilds: keep each task's rendered records, reuse them while the task is unchanged.

A build renders every task into spill files (spill.py), then deduplicates and balances across all
of them. Rendering is the per-task part, so it is what gets cached, and it costs nothing extra: in
an incremental build the spill files are written straight into
`<output>/.flanforge_cache/<task>/<fingerprint>/`, with each read shard's hash summary beside its
spill file, and an `index.json` last, which lists the files, the batches of every output shard,
the task's read/render counts and dead letters and is the entry's commit point (an entry without
one is ignored and cleared).

The fingerprint hashes everything the spill depends on: the parsed spec, each planned read shard
with the size and modification time of the files behind it, the render settings, the output
shard counts of the task's (split, cluster)s (they route records to batches), the task's cap
quotas (a capped split renders only its candidates) and the flanforge version. On the next build
into the same output, a task whose fingerprint has an index is not read or rendered again: its
refs, summaries, counts and dead letters are replayed into dedup and the shard writers, which
always run over every task, so cross-task dedup, caps and shard layout come out exactly as in a
clean build. Formats are not in the fingerprint: they act after the cache.

The cache directory starts with a dot so that pyarrow datasets and HF `datasets` skip it when
pointed at the output root.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import xxhash

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.counting import COUNTS, DEAD_LETTERS
from flanforge.beam_pipelines.layout import ShardLayout
from flanforge.beam_pipelines.render import RenderSettings
from flanforge.beam_pipelines.sources import SourceShard
from flanforge.beam_pipelines.spill import HashSummary, SpillRef
from flanforge.beam_pipelines.storage import delete, write_bytes
from flanforge.schemas.files import is_remote, join_path, match_files, read_bytes
from flanforge.beam_pipelines.transforms import SUMMARIES
from flanforge.schemas.manifest import RENDER_COUNTERS

CACHE_DIR = ".flanforge_cache"
SPILL_DIR = ".flanforge_spill"  # where a build that keeps no cache spills (removed when it ends)
INDEX_NAME = "index.json"
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
    shards: tuple[Mapping[str, Any], ...]  # per read shard: spill and summary paths, refs per output shard
    dead_letters: tuple[Mapping[str, Any], ...]
    counts: Mapping[str, int]


@dataclass(frozen=True)
class CachePlan:
    """Every task's fingerprint, and the committed entries this build reuses instead of rendering."""

    fingerprints: Mapping[str, str]
    reused: tuple[CacheEntry, ...] = ()
    write: bool = True  # keep this build's renders for the next one
    damaged: tuple[str, ...] = ()  # why entries were discarded instead of reused (for a warning)

    @cached_property
    def reused_tasks(self) -> frozenset[str]:
        return frozenset(e.task for e in self.reused)

    @cached_property
    def to_render(self) -> dict[str, str]:
        """fingerprint of each task this build reads and renders (and then caches)."""
        return {t: fp for t, fp in self.fingerprints.items() if t not in self.reused_tasks}

    def spill_dirs(self) -> dict[str, str]:
        """Where each task to render spills, relative to the output: its cache entry, or a scratch
        folder the build removes when the cache is not kept."""
        return {t: entry_dir(t, fp) if self.write else f"{SPILL_DIR}/{t}" for t, fp in self.to_render.items()}


def plan_cache(output: str, fingerprints: Mapping[str, str], *, incremental: bool) -> CachePlan:
    """Find the reusable entries and clear the rest of these tasks' entries (stale or unfinished).

    Not incremental: reuse nothing, keep nothing, and leave no entry of these tasks behind."""
    found, damaged = [], []
    for task, fp in sorted(fingerprints.items()) if incremental else []:
        try:
            found.append(load_entry(output, task, fp))
        except DamagedEntry as e:
            damaged.append(f"render cache of {task} discarded and re-rendered: {e}")
    plan = CachePlan(dict(fingerprints), tuple(e for e in found if e is not None), write=incremental, damaged=tuple(damaged))
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


def task_fingerprint(
    spec: TaskSpec,
    shards: Iterable[SourceShard],
    settings: RenderSettings,
    version: str,
    *,
    layout: ShardLayout,
    quotas: Mapping[tuple[str, str], int],
    spec_hash: str | None = None,
) -> str:
    """Hash of everything the task's spill depends on (see the module docstring). `spec_hash`:
    spec_digest(spec), when the caller has it (the tasks of an NIv2 spec share one)."""
    shard_rows = []
    stats: dict[str, list[tuple[str, int, float]]] = {}  # a big file has many shards: list it once
    splits = set()
    for shard in sorted(shards, key=lambda s: s.key):
        described = {k: v for k, v in dataclasses.asdict(shard).items() if k != "inline_rows"}
        if _statted(shard) and shard.location not in stats:
            stats[shard.location] = _file_stats(shard.location)
        shard_rows.append([described, stats.get(shard.location, []), quotas.get((spec.name, shard.key))])
        splits.add(shard.split)
    routing = {split: layout.count(split, spec.cluster) for split in sorted(splits)}
    payload = json.dumps(
        [version, spec.name, spec_hash or spec_digest(spec), shard_rows, dataclasses.asdict(settings), routing],
        sort_keys=True, default=repr, ensure_ascii=False,
    )
    return xxhash.xxh3_128_hexdigest(payload.encode("utf-8"))


def spec_digest(spec: TaskSpec) -> str:
    """Hash of a spec's content but its name and file path: what a task renders with. Worth
    sharing: it walks every template, and an NIv2 spec's ~1,600 tasks differ only in name."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("name", "path")}
    return xxhash.xxh3_128_hexdigest(json.dumps(fields, sort_keys=True, default=repr, ensure_ascii=False).encode("utf-8"))


class DamagedEntry(ValueError):
    """A cache entry whose index or files do not match their checksums (edited, truncated, missing)."""


def _checksum(body: Mapping[str, Any]) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def load_entry(output: str, task: str, fingerprint: str) -> CacheEntry | None:
    """The committed entry for this fingerprint, or None (never built, or its build did not finish).

    DamagedEntry when the index, or a spill or summary file it lists, does not match the checksum
    recorded when it was written: the entry cannot be trusted, so it is re-rendered."""
    index = join_path(output, f"{entry_dir(task, fingerprint)}/{INDEX_NAME}")
    try:
        data = json.loads(read_bytes(index))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise DamagedEntry(f"{index} is not valid JSON ({e})") from None
    body = {k: v for k, v in data.items() if k != "checksum"} if isinstance(data, dict) else {}
    if not body or data.get("checksum") != _checksum(body):
        raise DamagedEntry(f"{index} does not match its checksum (edited, or written by an older flanforge)")
    for files in body["shards"]:
        for key in ("spill", "summary"):
            path = join_path(output, files[key])
            try:
                digest = xxhash.xxh3_128_hexdigest(read_bytes(path))
            except FileNotFoundError:
                raise DamagedEntry(f"{path} is missing") from None
            if digest != files[f"{key}_xxh3"]:
                raise DamagedEntry(f"{path} does not match its checksum")
    return CacheEntry(
        task=task, fingerprint=fingerprint, shards=tuple(body["shards"]),
        dead_letters=tuple(body["dead_letters"]), counts=body["counts"],
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


def index_bytes(shard_files: Iterable[Mapping[str, Any]], dead_letters: Iterable[Mapping[str, Any]], counts: Mapping[str, int]) -> bytes:
    body = {
        "shards": sorted((dict(f) for f in shard_files), key=lambda f: f["spill"]),
        "dead_letters": sorted((dict(d) for d in dead_letters), key=lambda d: json.dumps(d, sort_keys=True)),
        "counts": {c: counts.get(c, 0) for c in RENDER_COUNTERS},
    }
    return json.dumps({**body, "checksum": _checksum(body)}, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")


class WriteRenderCache(beam.PTransform):
    """(shard files, read/render dead letters, read/render counts) -> one index.json per task, last."""

    def __init__(self, output: str, fingerprints: Mapping[str, str]):
        super().__init__()
        self._output = output
        self._fingerprints = dict(fingerprints)

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection, beam.PCollection]) -> beam.PCollection:
        shard_files, dead, counts = inputs
        output, fingerprints = self._output, self._fingerprints

        def write_index(task: str, file_list: list, dead_list: list, count_list: list) -> Iterator[str]:
            totals: collections.Counter[str] = collections.Counter()
            for (t, counter), n in count_list:
                if t == task:
                    totals[counter] += n
            rel = f"{entry_dir(task, fingerprints[task])}/{INDEX_NAME}"
            files = (f for f in file_list if f["task"] == task)
            write_bytes(join_path(output, rel), index_bytes(files, (d for d in dead_list if d["task"] == task), totals))
            yield rel

        return (
            shard_files.pipeline
            | "Tasks" >> beam.Create(sorted(fingerprints))
            | "WriteIndex" >> beam.FlatMap(
                write_index,
                file_list=beam.pvalue.AsList(shard_files),
                dead_list=beam.pvalue.AsList(dead),
                count_list=beam.pvalue.AsList(counts),
            )
        )


def _replay_shard(element: tuple[str, Mapping[str, Any]]) -> Iterator[Any]:
    """One cached read shard -> its (destination, SpillRef)s and its hash summary."""
    output, files = element
    spill = join_path(output, files["spill"])
    for dest, batches, rows in files["refs"]:
        yield tuple(dest), SpillRef(spill, tuple(batches), rows)
    yield beam.pvalue.TaggedOutput(SUMMARIES, HashSummary.from_bytes(read_bytes(join_path(output, files["summary"]))))


class ReadRenderCache(beam.PTransform):
    """Cache entries -> refs (main) + summaries + dead letters + counts, as rendering would emit them."""

    def __init__(self, output: str, entries: Iterable[CacheEntry]):
        super().__init__()
        self._output = output
        self._entries = sorted(entries, key=lambda e: e.task)

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:
        shards = [(self._output, dict(files)) for e in self._entries for files in e.shards]
        replayed = (
            pbegin
            | "Shards" >> beam.Create(shards)
            | "Spread" >> beam.Reshuffle()
            | "Replay" >> beam.FlatMap(_replay_shard).with_outputs(SUMMARIES, main="refs")
        )
        dead = pbegin | "DeadLetters" >> beam.Create([dict(d) for e in self._entries for d in e.dead_letters])
        counts = pbegin | "Counts" >> beam.Create(
            [((e.task, counter), n) for e in self._entries for counter, n in sorted(e.counts.items())]
        )
        return {"refs": replayed["refs"], SUMMARIES: replayed[SUMMARIES], DEAD_LETTERS: dead, COUNTS: counts}
