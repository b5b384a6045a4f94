"""WriteManifest: the last step of a build, and its commit point.

It consumes every shard and dead-letter file written and every count as side inputs, so it can
only run once all of them exist; it then checks the accounting identity and writes
manifest.json. A build that fails before this step leaves no manifest behind.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam

from flanforge.beam_pipelines.card import CARD_NAME, dataset_card
from flanforge.beam_pipelines.catalog import COLLECTION_SETTINGS, TaskSpec
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.contamination import report
from flanforge.beam_pipelines.storage import write_bytes
from flanforge.schemas.files import join_path, open_input
from flanforge.schemas.manifest import (
    COUNTERS,
    MANIFEST_NAME,
    VERSION,
    DeadLetterInfo,
    Manifest,
    SampleFileInfo,
    ShardInfo,
    TaskEntry,
    accounting_errors,
    manifest_to_dict,
    mixing_rates,
    quality_problems,
)

def contamination_report(config: BuildConfig, counts: Iterable[tuple[tuple[str, str], int]]) -> dict[str, Any]:
    """The manifest's `contamination` section ({} when the build did not check: the check off, or
    no evaluation data to check against, so no train example was sketched)."""
    counts = list(counts)
    if not config.contamination_ngram or not any(counter.startswith("contamination@") for (_, counter), _ in counts):
        return {}
    return report(
        counts, ngram=config.contamination_ngram, decontaminated=config.decontaminate, against=config.decontaminate_against,
    )


class AccountingError(RuntimeError):
    """Rows went missing between stages: a bug, so the build fails instead of publishing."""


class DataQualityError(RuntimeError):
    """A task read no rows, or too much of it failed (--max-error-rate): the build fails instead
    of publishing a corpus with a task silently missing or thinned."""


REASONS_SHOWN = 3
REPORT_TEXT_CHARS = 160


def first_dead_letters(output: str, path: str, stage: str, n: int = REASONS_SHOWN) -> list[dict[str, Any]]:
    """The first n dead letters of one stage in a task's file (sorted, so the same ones every run)."""
    letters = []
    with open_input(join_path(output, path)) as f:
        for line in f:
            letter = json.loads(line) if line.strip() else {}
            if letter.get("stage") == stage:
                letters.append(letter)
            if len(letters) >= n:
                break
    return letters


def quality_report(
    output: str, problems: Mapping[str, tuple[str, str]], dead_letters: Iterable[dict[str, Any]], max_error_rate: float
) -> str:
    """What failed, per task, with the first few reasons: where (file and line), why, and the text."""
    files = {d["task"]: d["path"] for d in dead_letters}
    lines = [f"{len(problems)} task(s) failed the data checks (--max-error-rate {max_error_rate:g}); not publishing:"]
    for task, (stage, problem) in sorted(problems.items()):
        lines.append(f"  {task}: {problem}")
        for d in first_dead_letters(output, files[task], stage) if task in files else []:
            text = f" | {d['text'][:REPORT_TEXT_CHARS]}" if d.get("text") else ""
            lines.append(f"    {d['stage']} {d['split']} {d['where']}: {d['error']}{text}")
    if files:
        lines.append(f"  every failure: {join_path(output, 'dead_letters')}/<task>.jsonl")
    return "\n".join(lines)


def task_metadata(task: TaskSpec) -> dict[str, Any]:
    """An imported task's provenance for the manifest (promptsource's dataset and prompt metadata)."""
    if not task.promptsource:
        return {}
    prompts = {t.id: dict(t.promptsource) for t in task.templates if t.promptsource}
    return {"promptsource": {**dict(task.promptsource), "templates": prompts}}


def collection_summary(config: BuildConfig, entries: Mapping[str, TaskEntry]) -> dict[str, dict[str, Any]]:
    """Per collection: the recipe's weight (None without `collections:`), the rate its tasks got
    together, its tasks, the records written (all splits, and train), and the settings its tasks
    were built with (the build's, or the collection's own). A collection the recipe weighs but no
    task of this build belongs to is listed with 0 tasks and rate 0."""
    def summary(name: str, weight: float | None) -> dict[str, Any]:
        own = config.for_collection(name)
        settings = {k: getattr(own, k) for k in COLLECTION_SETTINGS}
        return {"weight": weight, "rate": 0.0, "tasks": 0, "written": 0, "train": 0, "settings": settings}

    out = {name: summary(name, c["weight"]) for name, c in config.collections.items()}
    for entry in entries.values():
        c = out.setdefault(entry.collection, summary(entry.collection, None))
        c["rate"] += entry.rate
        c["tasks"] += 1
        c["written"] += entry.counts.get("written", 0)
        c["train"] += entry.written_by_split.get("train", 0)
    return dict(sorted(out.items()))


def assemble_manifest(
    config: BuildConfig,
    tasks: Iterable[TaskSpec],
    excluded_clusters: tuple[str, ...],
    counts: Iterable[tuple[tuple[str, str], int]],
    shards: Iterable[dict[str, Any]],
    dead_letters: Iterable[dict[str, Any]],
    fingerprints: Mapping[str, str] | None = None,
    reused: frozenset[str] = frozenset(),
    samples: Iterable[dict[str, Any]] = (),
    file_metadata: Mapping[str, dict[str, Any]] | None = None,
) -> Manifest:
    """`file_metadata`: task -> what its source file says of it (an NIv2 task file's categories,
    languages, ...), added to the task's `metadata`."""
    per_task: dict[str, dict[str, int]] = {}
    by_split: dict[str, dict[str, int]] = {}
    counts = list(counts)
    for (task, counter), n in counts:
        if counter.startswith("contamination@"):
            continue
        if counter.startswith("written@"):
            by_split.setdefault(task, {})[counter.split("@", 1)[1]] = n
        else:
            per_task.setdefault(task, {})[counter] = n
    tasks = list(tasks)
    weights = {t.name: config.mixing_weight(by_split.get(t.name, {}).get("train", 0), t.collection) for t in tasks}
    rates = mixing_rates(weights, {t.name: t.collection for t in tasks}, config.collection_weights)
    entries = {
        t.name: TaskEntry(
            cluster=t.cluster,
            templates=len(t.templates),
            counts={c: per_task.get(t.name, {}).get(c, 0) for c in COUNTERS},
            written_by_split=dict(sorted(by_split.get(t.name, {}).items())),
            mixing_weight=weights[t.name],
            fingerprint=(fingerprints or {}).get(t.name, ""),
            from_cache=t.name in reused,
            metadata={**task_metadata(t), **(file_metadata or {}).get(t.name, {})},
            collection=t.collection,
            rate=rates.get(t.name, 0.0),
        )
        for t in tasks
    }
    return Manifest(
        root=config.output,
        config=config.to_dict(),
        tasks=entries,
        shards=tuple(ShardInfo(**s) for s in sorted(shards, key=lambda s: s["path"])),
        dead_letters=tuple(DeadLetterInfo(**d) for d in sorted(dead_letters, key=lambda d: d["path"])),
        flanforge_version=VERSION,
        holdout_clusters=tuple(config.holdout_clusters),
        excluded_clusters=excluded_clusters,
        contamination=contamination_report(config, counts),
        near_duplicate_samples=tuple(SampleFileInfo(**s) for s in sorted(samples, key=lambda s: s["path"])),
        collections=collection_summary(config, entries),
    )


def encode_manifest(manifest: Manifest) -> bytes:
    return (json.dumps(manifest_to_dict(manifest), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


class WriteManifest(beam.PTransform):
    """(shard infos, counts, dead-letter infos) -> manifest.json under the output root."""

    def __init__(
        self,
        config: BuildConfig,
        tasks: list[TaskSpec],
        excluded_clusters: tuple[str, ...],
        fingerprints: Mapping[str, str] | None = None,
        reused: frozenset[str] = frozenset(),
        root: str | None = None,
    ):
        """`fingerprints` and `reused` (tasks replayed from the render cache) are recorded per task;
        the manifest is written under `root` (the build's staging folder; default: the output)."""
        super().__init__()
        self._config = config
        self._root = root or config.output
        self._tasks = tasks
        self._excluded = excluded_clusters
        self._fingerprints = dict(fingerprints or {})
        self._reused = reused

    def expand(self, inputs: tuple[beam.PCollection, ...]) -> beam.PCollection:
        """(shard infos, counts, dead-letter infos[, near-duplicate sample file infos[, (task,
        metadata) read from the task's source file]])."""
        shards, counts, dead, *rest = inputs
        samples = rest[0] if rest else shards.pipeline | "NoSamples" >> beam.Create([])
        metadata = rest[1] if len(rest) > 1 else shards.pipeline | "NoFileMetadata" >> beam.Create([])
        config, tasks, excluded, root = self._config, self._tasks, self._excluded, self._root
        fingerprints, reused = self._fingerprints, self._reused

        def write(_: Any, shard_list: list, count_list: list, dead_list: list, sample_list: list, metadata: dict) -> Iterator[str]:
            manifest = assemble_manifest(config, tasks, excluded, count_list, shard_list, dead_list, fingerprints, reused, sample_list, metadata)
            errors = accounting_errors(manifest.tasks)
            if errors:
                raise AccountingError("rows unaccounted for; not publishing:\n" + "\n".join(errors))
            problems = quality_problems(manifest.tasks, config.max_error_rate)
            if problems:
                raise DataQualityError(quality_report(root, problems, dead_list, config.max_error_rate))
            path = join_path(root, MANIFEST_NAME)
            write_bytes(path, encode_manifest(manifest))
            write_bytes(join_path(root, CARD_NAME), dataset_card(manifest, tasks, config.formats).encode("utf-8"))
            yield path

        return (
            shards.pipeline
            | "Once" >> beam.Create([None])
            | "Write" >> beam.FlatMap(
                write,
                shard_list=beam.pvalue.AsList(shards),
                count_list=beam.pvalue.AsList(counts),
                dead_list=beam.pvalue.AsList(dead),
                sample_list=beam.pvalue.AsList(samples),
                metadata=beam.pvalue.AsDict(metadata),
            )
        )
