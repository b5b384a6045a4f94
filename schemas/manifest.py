"""manifest.json: the commit point of a build, and the only thing a reader should trust.

The pipeline writes it last; a directory without one holds no finished build. It records the
build config, per-task accounting, and every shard with its row count and sha256, so a reader
can check what it got. Reading goes through schemas/files.py (pyarrow.fs, local paths and gs://
alike), and this module imports neither Beam nor TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from flanforge.schemas.files import read_bytes

def _package_version() -> str:
    """flanforge's version as installed (setup.py is its one home); "0+unknown" from a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flanforge")
    except PackageNotFoundError:
        return "0+unknown"


VERSION = _package_version()  # recorded in every manifest and in the render cache's fingerprints
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "flanforge.manifest"
# Where a build stages its corpus, and the mark that says its swap into the root has begun
# (beam_pipelines/publish.py); a reader that finds the mark but no root manifest says so.
STAGING_DIR = ".flanforge_staging"
PUBLISHING_MARK = "PUBLISHING"
MANIFEST_VERSION = 1

# Per-task counters, in the order the data flows. The accounting identity over them is
#   template_applications == written + duplicates + near_duplicates + contaminated + capped + failed + skipped
# where template_applications counts (kept row, template) pairs, skipped those a template's own
# filter excluded, and
#   read == filtered + rows that reached rendering.
# read_errors are source records that could not be parsed into a row at all (dead letters).
COUNTERS: tuple[str, ...] = (
    "read",
    "read_errors",
    "filtered",
    "template_applications",
    "rendered",
    "failed",
    "skipped",
    "duplicates",
    "near_duplicates",
    "contaminated",
    "capped",
    "written",
)
# Where every template application ends up: the right-hand side of the accounting identity.
REMOVED_OR_WRITTEN: tuple[str, ...] = ("written", "duplicates", "near_duplicates", "contaminated", "capped", "failed", "skipped")
# What the Render stage counts (and the render cache replays): a capped split's applications that
# were never rendered are counted as capped there; the shard writers count the rest.
RENDER_COUNTERS: tuple[str, ...] = ("read", "read_errors", "filtered", "template_applications", "rendered", "failed", "skipped", "capped")


class ManifestError(ValueError):
    """The manifest is missing, malformed, or does not match the files it lists."""


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the build root, '/'-separated
    format: str  # tfrecord | parquet
    split: str
    cluster: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class DeadLetterInfo:
    path: str
    task: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class SampleFileInfo:
    """A file of examples kept for inspection (near-duplicate pairs removed from one split)."""

    path: str
    split: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class TaskEntry:
    cluster: str
    templates: int  # templates in the task's spec
    counts: dict[str, int]
    written_by_split: dict[str, int] = field(default_factory=dict)
    # Examples-proportional mixing weight for training: min(train examples, the build's rate cap).
    mixing_weight: int = 0
    # Hash of what the task's rendering depends on (spec, source files, render settings); a later
    # build into the same output reuses the task's rendered records while it is unchanged.
    fingerprint: str = ""
    from_cache: bool = False  # this build reused the cached render instead of reading and rendering
    # Where the task came from when it was imported (promptsource: its dataset, subset, file and, per
    # template, the prompt's id, name and metadata); {} for the catalog's own specs.
    metadata: dict[str, Any] = field(default_factory=dict)
    collection: str = ""  # flan2021, p3, niv2, cot, ...: whose weight the recipe's `collections:` sets ("" before collections)
    # The task's share of training: mixing_rates() over the build's tasks (the rates sum to 1); 0 = not trained on.
    rate: float = 0.0


@dataclass(frozen=True)
class Manifest:
    root: str
    config: dict[str, Any]
    tasks: dict[str, TaskEntry]
    shards: tuple[ShardInfo, ...]
    dead_letters: tuple[DeadLetterInfo, ...]
    flanforge_version: str
    # Clusters held out for zero-shot evaluation (their eval data is split=eval_zeroshot) and the
    # overlapping clusters removed from the build with them.
    holdout_clusters: tuple[str, ...] = ()
    excluded_clusters: tuple[str, ...] = ()
    # Train examples found in evaluation data, per task (contamination.py); {} when not checked.
    contamination: dict[str, Any] = field(default_factory=dict)
    near_duplicate_samples: tuple[SampleFileInfo, ...] = ()
    # collection -> {weight (the recipe's, or None without `collections:`), rate (its tasks' rates
    # summed), tasks, written, train}; {} in manifests written before collections.
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def shards_for(
        self, *, fmt: str, splits: Iterable[str] | None = None, clusters: Iterable[str] | None = None
    ) -> list[ShardInfo]:
        split_set = None if splits is None else set(splits)
        cluster_set = None if clusters is None else set(clusters)
        return [
            s
            for s in self.shards
            if s.format == fmt
            and (split_set is None or s.split in split_set)
            and (cluster_set is None or s.cluster in cluster_set)
        ]

    @property
    def clusters(self) -> dict[str, list[str]]:
        """cluster -> its task names, sorted."""
        out: dict[str, list[str]] = {}
        for name, entry in sorted(self.tasks.items()):
            out.setdefault(entry.cluster, []).append(name)
        return out

    def uri(self, relative_path: str) -> str:
        return join_uri(self.root, relative_path)


def join_uri(root: str, relative: str) -> str:
    return root.rstrip("/") + "/" + relative


def manifest_to_dict(m: Manifest) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "flanforge_version": m.flanforge_version,
        "config": m.config,
        "tasks": {k: asdict(v) for k, v in sorted(m.tasks.items())},
        "clusters": cluster_totals(m.tasks),
        "totals": sum_counts(t.counts for t in m.tasks.values()),
        "shards": [asdict(s) for s in m.shards],
        "dead_letters": [asdict(d) for d in m.dead_letters],
        "holdout_clusters": list(m.holdout_clusters),
        "excluded_clusters": list(m.excluded_clusters),
        "contamination": m.contamination,
        "near_duplicate_samples": [asdict(s) for s in m.near_duplicate_samples],
        "collections": m.collections,
    }


def manifest_from_dict(data: dict[str, Any], root: str) -> Manifest:
    if data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{join_uri(root, MANIFEST_NAME)} is not a flanforge manifest")
    if data.get("version") != MANIFEST_VERSION:
        raise ManifestError(
            f"{join_uri(root, MANIFEST_NAME)} has manifest version {data.get('version')}, this flanforge reads {MANIFEST_VERSION}"
        )
    try:
        return Manifest(
            root=root,
            config=data["config"],
            tasks={k: TaskEntry(**v) for k, v in data["tasks"].items()},
            shards=tuple(ShardInfo(**s) for s in data["shards"]),
            dead_letters=tuple(DeadLetterInfo(**d) for d in data["dead_letters"]),
            flanforge_version=data["flanforge_version"],
            holdout_clusters=tuple(data.get("holdout_clusters", ())),
            excluded_clusters=tuple(data.get("excluded_clusters", ())),
            contamination=data.get("contamination", {}),
            near_duplicate_samples=tuple(SampleFileInfo(**s) for s in data.get("near_duplicate_samples", ())),
            collections=data.get("collections", {}),
        )
    except (KeyError, TypeError) as e:
        raise ManifestError(f"{join_uri(root, MANIFEST_NAME)} is malformed: {e}") from e


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total = {c: 0 for c in COUNTERS}
    for c in counts:
        for k in COUNTERS:
            total[k] += c.get(k, 0)
    return total


def cluster_totals(tasks: dict[str, TaskEntry]) -> dict[str, dict[str, int]]:
    by_cluster: dict[str, list[dict[str, int]]] = {}
    for entry in tasks.values():
        by_cluster.setdefault(entry.cluster, []).append(entry.counts)
    return {c: sum_counts(v) for c, v in sorted(by_cluster.items())}


def mixing_rates(
    mixing_weights: Mapping[str, float], collection_of: Mapping[str, str], collection_weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Each task's share of training, as Flan 2022 mixed its collections: a collection gets its
    weight, and its tasks share it in proportion to their mixing weights (examples-proportional
    within the collection):

        rate(t) = W(c) * m(t) / sum of m over c's tasks,   normalised to sum to 1

    over the collections that have a task with m > 0 (so a collection with nothing to train on,
    e.g. a held-out one, gives its weight to the others in proportion). Without collection weights
    the whole build is one examples-proportional mixture, rate(t) = m(t) / sum of m, as FLAN 2021.
    Tasks with m = 0 get no rate. The builder records these rates in the manifest and the trainer
    recomputes them from the same inputs for the tasks it keeps, so the two cannot disagree.
    Raises ValueError for a weighted task whose collection has no weight."""
    weighted = {t: float(m) for t, m in mixing_weights.items() if m > 0}
    if not collection_weights:
        total = sum(weighted.values())
        return {t: m / total for t, m in sorted(weighted.items())} if total else {}
    unweighted = sorted(f"{t} ({collection_of.get(t, '?')})" for t in weighted if collection_of.get(t) not in collection_weights)
    if unweighted:
        raise ValueError(f"task(s) of a collection with no weight: {', '.join(unweighted)}; weighted: {', '.join(sorted(collection_weights))}")
    per_collection: dict[str, float] = {}
    for t, m in weighted.items():
        per_collection[collection_of[t]] = per_collection.get(collection_of[t], 0.0) + m
    share = {c: collection_weights[c] for c in per_collection}
    total = sum(share.values())
    return {t: share[collection_of[t]] / total * m / per_collection[collection_of[t]] for t, m in sorted(weighted.items())}


def accounting_errors(tasks: dict[str, TaskEntry]) -> list[str]:
    """Tasks whose counts break the accounting identity (empty when every row is accounted for)."""
    errors = []
    for name, entry in sorted(tasks.items()):
        c = entry.counts
        out = sum(c.get(k, 0) for k in REMOVED_OR_WRITTEN)
        if c["template_applications"] != out:
            errors.append(f"{name}: template_applications={c['template_applications']} but {'+'.join(REMOVED_OR_WRITTEN)}={out}")
    return errors


def quality_problems(tasks: dict[str, TaskEntry], max_error_rate: float) -> dict[str, tuple[str, str]]:
    """task -> (stage, why) its data is not good enough to publish: it read no rows, or more than
    `max_error_rate` of its records could not be read (stage read), or of its template
    applications failed (stage render)."""
    problems = {}
    for name, entry in sorted(tasks.items()):
        c = entry.counts
        records = c["read"] + c["read_errors"]
        if c["read"] == 0:
            problems[name] = ("read", f"read no rows ({c['read_errors']} unreadable)")
        elif c["read_errors"] > max_error_rate * records:
            problems[name] = ("read", f"{c['read_errors']} of {records} records unreadable ({c['read_errors'] / records:.1%})")
        elif c["failed"] > max_error_rate * c["template_applications"]:
            share = c["failed"] / c["template_applications"]
            problems[name] = ("render", f"{c['failed']} of {c['template_applications']} template applications failed ({share:.1%})")
    return problems


def read_manifest(root: str) -> Manifest:
    """Load DIR/manifest.json; raise ManifestError with a fix when there is no finished build."""
    root = root.rstrip("/") or "/"
    uri = join_uri(root, MANIFEST_NAME)
    try:
        raw = read_bytes(uri)
    except FileNotFoundError:
        if _publish_interrupted(root):
            raise ManifestError(
                f"no {MANIFEST_NAME} in {root}: a build was killed while swapping its corpus in; the new corpus is "
                f"complete under {join_uri(root, STAGING_DIR)}: run the build into {root} again (it finishes the swap first)"
            ) from None
        raise ManifestError(
            f"no {MANIFEST_NAME} in {root}: not a finished flanforge build "
            "(run `flanforge build --output DIR` first, or point at the build's root directory)"
        ) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{uri} is not valid JSON: {e}") from e
    return manifest_from_dict(data, root)


def _publish_interrupted(root: str) -> bool:
    try:
        read_bytes(join_uri(join_uri(root, STAGING_DIR), PUBLISHING_MARK))
    except FileNotFoundError:
        return False
    return True


def verify_shards(manifest: Manifest, shards: Iterable[ShardInfo], *, check_sha256: bool = False) -> None:
    """Check that listed shards exist (and match their sha256); raise ManifestError naming the first bad one."""
    for s in shards:
        uri = manifest.uri(s.path)
        try:
            data = read_bytes(uri)
        except FileNotFoundError:
            raise ManifestError(f"shard listed in the manifest is missing: {uri}") from None
        if len(data) != s.bytes:
            raise ManifestError(f"shard {uri} has {len(data)} bytes, the manifest says {s.bytes}")
        if check_sha256 and hashlib.sha256(data).hexdigest() != s.sha256:
            raise ManifestError(f"shard {uri} does not match its sha256 in the manifest")
