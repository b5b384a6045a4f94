"""`flanforge build`: parse flags, plan the reads, run the pipeline, report what was written."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Mapping, TextIO

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, WorkerOptions, _BeamArgumentParser
from apache_beam.runners.runner import PipelineResult

from flanforge.beam_pipelines.balance import shard_quotas
from flanforge.beam_pipelines.catalog import SpecError, TaskSpec, load_catalog
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.contamination import SIDE_INPUT_MAX_BYTES, external_shards
from flanforge.beam_pipelines.incremental import SPILL_DIR, CachePlan, plan_cache, spec_digest, task_fingerprint
from flanforge.beam_pipelines.layout import plan_layout, profile_task
from flanforge.beam_pipelines.options import BuildOptions
from flanforge.beam_pipelines.pipeline import BuildPlan, build_pipeline
from flanforge.beam_pipelines.progress import ProgressOptions, progress_display, progress_wanted
from flanforge.beam_pipelines.render import CompiledTask, compile_tasks
from flanforge.beam_pipelines.runners import (
    DATAFLOW,
    DIRECT,
    announce_job,
    check_launch,
    is_translate_only,
    runner_kind,
    unfinished_note,
    waits_for_job,
)
from flanforge.beam_pipelines.lock import output_lock
from flanforge.beam_pipelines.manifest import AccountingError, DataQualityError
from flanforge.beam_pipelines.publish import recover
from flanforge.beam_pipelines.selection import select_tasks
from flanforge.beam_pipelines.sources import SourceError, SourceShard, plan_reads, tasks_per_file
from flanforge.beam_pipelines.storage import UNREACHABLE, delete_tree, unreachable
from flanforge.schemas.files import join_path
from flanforge.schemas.manifest import COUNTERS, MANIFEST_NAME, VERSION, Manifest, read_manifest
from flanforge.schemas.records import EVAL_ZEROSHOT

USAGE = """\
flanforge build --output DIR [flanforge flags] [Beam pipeline options]

Examples:
  flanforge build --demo --output out/demo
  flanforge build --recipe flan2021 --holdout-clusters nli --output out/flan2021
  flanforge build --output out/sst2 --source sst2=data/sst2/train.tsv --source sst2:validation=data/sst2/dev.tsv
  flanforge build --demo --output out/demo --direct_running_mode=multi_processing --direct_num_workers=2
"""


def _full_parser() -> _BeamArgumentParser:
    """Every flag of every PipelineOptions class (ours first), as Beam itself collects them."""
    parser = _own_parser()
    for cls in PipelineOptions.__subclasses__():
        if cls not in (BuildOptions, ProgressOptions):
            cls._add_argparse_args(parser)
    return parser


def runner_options(options: PipelineOptions) -> PipelineOptions:
    """The options a local runner gets: Beam's, without flanforge's own flags. Those were read on
    the launcher into BuildConfig; handed on, every worker process of a multi-process DirectRunner
    would re-parse them and log "Discarding unparseable args" with the whole --source list. A
    Dataflow job keeps them: they are the job's record of how it was asked for."""
    if runner_kind(options) != DIRECT:
        return options
    ours = {a.dest for a in _own_parser()._actions}
    values = options.get_all_options(drop_default=True, retain_unknown_options=False)
    return PipelineOptions(flags=[], **{k: v for k, v in values.items() if k not in ours})


def _own_parser() -> _BeamArgumentParser:
    """flanforge's flags only: what `--help` shows (Beam's ~700 lines of options are `--help-beam`)."""
    parser = _BeamArgumentParser(
        prog="flanforge build", usage=USAGE, allow_abbrev=False,
        epilog="Beam's runner and pipeline options (--runner, --project, --region, --temp_location, "
        "--direct_num_workers, ...) are accepted too: flanforge build --help-beam lists them all.",
    )
    BuildOptions._add_argparse_args(parser)
    ProgressOptions._add_argparse_args(parser.add_argument_group("console"))
    return parser


def nominal_shards(task: TaskSpec, splits: Mapping[str, str] | None) -> list[SourceShard]:
    """A dry run's stand-in for sources it does not read: one empty read shard per output split,
    so the job can be translated and its shape shown without touching the data."""
    wanted = splits or {s: s for s in task.source.splits}
    return [
        SourceShard(task=task.name, split=out, kind=task.source.kind, location=task.source.path or "", start=0, end=-1, id_field=task.source.id_field)
        for out in sorted(set(wanted.values()))
    ]


def plan_build(config: BuildConfig, dry_run: bool = False) -> BuildPlan:
    """Resolve the tasks, their read shards, the output layout and the cap quotas on the launcher,
    failing before any work is launched.

    `dry_run`: only the job's shape is wanted, so hub sources are not asked (they stand in as one
    empty read shard per split), nor are sources that cannot be listed; the plan names them."""
    catalog = load_catalog(config.templates)
    named = config.tasks or (tuple(config.sources) if not config.clusters else ())
    selection = select_tasks(catalog, named)
    selected = catalog.select(selection.specs or None, config.clusters or None)
    unknown = sorted(set(config.sources) - {t.name for t in selected})
    if unknown:
        raise SpecError([f"--source names task(s) not in this build: {', '.join(unknown)}"])
    held = set(config.holdout_clusters)
    excluded = catalog.excluded_by_holdout(held) - held
    tasks = [t for t in selected if t.cluster not in excluded]
    config.check_collections(tasks)
    origins = compile_tasks(tasks)  # a template that does not compile stops the build before any work
    shards: dict[str, list[SourceShard]] = {}
    compiled: dict[str, CompiledTask] = {}
    profiles = {}
    unread: dict[str, str] = {}  # task -> why a dry run did not plan it from its source
    built: list[TaskSpec] = []
    spec_hashes: dict[str, str] = {}  # task -> spec_digest of the spec it was built from
    for t in tasks:
        splits = {"validation": EVAL_ZEROSHOT} if t.cluster in held else None
        overrides = config.sources.get(t.name, {})
        if dry_run and t.source.kind == "hf" and not overrides and not config.demo:
            planned, unread[t.name] = nominal_shards(t, splits), "a hub dataset (not asked in a dry run)"
        else:
            try:
                planned = plan_reads(t, demo=config.demo, overrides=overrides, splits=splits)
            except SourceError as e:
                if not dry_run:
                    raise
                planned, unread[t.name] = nominal_shards(t, splits), f"not listed: {e}"
        own = config.render_settings_for(t)
        profile = profile_task(origins[t.name], mode=own.mode, options_variants=own.options_variants, few_shot=own.few_shot)
        digest = spec_digest(t)
        per_file = tasks_per_file(t, planned)  # an NIv2 spec: a task per task file
        for name, task_shards in (per_file if t.name in unread else selection.keep(t.name, per_file)).items():
            if name in shards or (name != t.name and name in catalog.tasks):
                raise SpecError([f"{t.path}: task {name!r}, one per file of {t.name}'s source, is also the name of another task"])
            spec = t if name == t.name else replace(t, name=name)
            built.append(spec)
            spec_hashes[name] = digest
            shards[name], compiled[name], profiles[name] = task_shards, origins[t.name].as_task(spec), profile
    tasks = built
    settings = {t.name: config.render_settings_for(t) for t in tasks}
    caps = {t.name: cap for t in tasks if (cap := config.cap_for(t)) is not None}
    layout = plan_layout(compiled.values(), shards, profiles, target_shard_bytes=config.target_shard_bytes, caps=caps)
    quotas = shard_quotas(shards, {t.name: len(t.templates) for t in tasks}, caps)
    fingerprints = {
        t.name: task_fingerprint(t, shards[t.name], settings[t.name], VERSION, layout=layout, quotas=quotas, spec_hash=spec_hashes[t.name])
        for t in tasks
    }
    external: list[tuple[SourceShard, str]] = []
    for number, argument in enumerate(config.decontaminate_against):
        against, field = external_shards(argument, number)
        external += [(s, field) for s in against]
    evaluation_bytes = sum(s.file_bytes for split_shards in shards.values() for s in split_shards if s.split != "train")
    evaluation_bytes += sum(s.file_bytes for s, _ in external)
    return BuildPlan(
        tasks, shards, tuple(sorted(excluded)), fingerprints, layout, quotas, settings, caps,
        external=tuple(external), contamination_join=evaluation_bytes > SIDE_INPUT_MAX_BYTES, unread=unread,
    )


def prepare_output(config: BuildConfig, plan: BuildPlan, err: TextIO) -> CachePlan:
    """Finish or clear what an earlier build left (an interrupted publish, staging, scratch), and
    decide which tasks' cached renders this one reuses. The published corpus is not touched:
    the build writes to staging and swaps at the end (publish.py)."""
    note = recover(config.output)
    if note:
        print(f"note: {note}", file=err)
    delete_tree(join_path(config.output, SPILL_DIR))
    cache = plan_cache(config.output, plan.fingerprints, incremental=config.incremental)
    for warning in cache.damaged:
        print(f"warning: {warning}", file=err)
    return cache


@dataclass(frozen=True)
class BuildRun:
    """What a build returns: Beam's result (the translated job of a dry run, metrics) and the manifest."""

    result: PipelineResult
    manifest: Manifest | None  # None when the job was only translated (--dry_run) or not waited for (--no_wait_until_finish)
    summary: tuple[str, ...] = ()  # a dry run: what would be submitted (dry_run_summary)


JOB_GRAPH_FILE = "flanforge-dry-run-job.pbtxt"


def dry_run_summary(pipeline: beam.Pipeline, result: PipelineResult, options: PipelineOptions, plan: BuildPlan, graph_path: str) -> tuple[str, ...]:
    """What a translated job would do: its steps, tasks, reads, output layout and workers; and the
    job graph (Beam's pipeline proto, as text) written to `graph_path` for a closer look."""
    from google.protobuf import text_format

    job = getattr(result, "job", None)
    proto = job.proto_pipeline if job is not None and getattr(job, "proto_pipeline", None) is not None else pipeline.to_runner_api()
    with open(graph_path, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(proto))
    transforms = proto.components.transforms
    # Beam wraps the pipeline in one root; its children are the stages build_pipeline composed
    children = [c for r in proto.root_transform_ids for c in transforms[r].subtransforms] or list(proto.root_transform_ids)
    steps = [transforms[c].unique_name for c in children]
    shards = [s for name in plan.shards for s in plan.shards[name]]
    clusters = sorted({t.cluster for t in plan.tasks})
    layout = plan.layout.counts
    by_split: dict[str, int] = {}
    for key, n in layout.items():
        by_split[key.split("/", 1)[0]] = by_split.get(key.split("/", 1)[0], 0) + n
    workers = options.view_as(WorkerOptions)
    lines = [
        f"  steps: {len(steps)} top-level ({', '.join(steps)})",
        f"  tasks: {len(plan.tasks)} in {len(clusters)} clusters ({', '.join(clusters)})",
        f"  reads: {len(shards)} read shards, {sum(s.file_bytes for s in shards) / 1e6:,.1f} MB of files (hub and sample sources not counted)",
        *(
            [f"  not read for this dry run ({len(plan.unread)} tasks, sized as empty; the real run plans them from their data): "
             + ", ".join(f"{t} ({why})" for t, why in sorted(plan.unread.items())[:8])
             + (f", … {len(plan.unread) - 8} more" if len(plan.unread) > 8 else "")]
            if plan.unread else []
        ),
        "  output: " + ", ".join(f"{split} {n} shards" for split, n in sorted(by_split.items())) + f" per format, over {len(layout)} split/cluster folders",
    ]
    if runner_kind(options) == DATAFLOW:
        lines.append(
            f"  workers: max {workers.max_num_workers or 'Dataflow default'}, machine {workers.machine_type or 'Dataflow default'}, "
            f"disk {workers.disk_size_gb or 'default'} GB"
        )
    lines.append(f"  job graph: {graph_path}")
    return tuple(lines)


def run_build(config: BuildConfig, options: PipelineOptions, err: TextIO | None = None) -> BuildRun:
    """Plan, lock the output, run the pipeline (it builds into staging and publishes as its last
    step) and wait for it, then read the manifest back.

    A dry run (`--dry_run=True`, e.g. to check the Dataflow job offline) only translates the job, so it
    leaves the output and its render cache alone (reading them could need the network) and has no
    manifest to read; nor has a job submitted with Beam's `--no_wait_until_finish`, until it ends.
    The pipeline is run explicitly rather than by `with beam.Pipeline(...)`, so that a Dataflow job
    can be named before the wait. `err` gets the progress line of a local run and that job link."""
    err = err or sys.stderr
    translate_only = is_translate_only(options)
    plan = plan_build(config, dry_run=translate_only)
    with contextlib.nullcontext() if translate_only else output_lock(config.output, err=err):
        return _run_planned(config, options, plan, translate_only, err)


def _run_planned(config: BuildConfig, options: PipelineOptions, plan: BuildPlan, translate_only: bool, err: TextIO) -> BuildRun:
    cache = CachePlan(dict(plan.fingerprints), write=config.incremental) if translate_only else prepare_output(config, plan, err)
    if cache.reused:
        names = sorted(cache.reused_tasks)
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        print(f"render cache: {len(names)} of {len(plan.tasks)} tasks unchanged, not read or rendered again ({shown})", file=err)
    show_progress = runner_kind(options) == DIRECT and progress_wanted(options.view_as(ProgressOptions).no_progress, err)
    with tempfile.TemporaryDirectory(prefix="flanforge-progress-") if show_progress else contextlib.nullcontext() as progress_dir:
        pipeline = beam.Pipeline(options=runner_options(options))
        build_pipeline(pipeline, config, plan, cache, progress_dir=progress_dir)
        input_bytes = sum(s.file_bytes for s in plan.shards_of(cache.to_render))
        with progress_display(err, progress_dir, input_bytes) if show_progress else contextlib.nullcontext():
            result = pipeline.run()
            announce_job(result, options, err)
            if waits_for_job(options):
                result.wait_until_finish()
    finished = waits_for_job(options) and not translate_only
    if finished:
        delete_tree(join_path(config.output, SPILL_DIR))  # scratch spill files: the shards are written
    graph = os.path.join(tempfile.gettempdir(), JOB_GRAPH_FILE)
    summary = dry_run_summary(pipeline, result, options, plan, graph) if translate_only else ()
    return BuildRun(result, read_manifest(config.output) if finished else None, summary)


def print_summary(manifest: Manifest, out: TextIO) -> None:
    totals = {c: sum(t.counts[c] for t in manifest.tasks.values()) for c in COUNTERS}
    print(f"manifest: {manifest.uri(MANIFEST_NAME)}", file=out)
    for fmt in sorted({s.format for s in manifest.shards}):
        files = manifest.shards_for(fmt=fmt)
        print(f"{fmt}: {len(files)} shard(s) under {manifest.uri(fmt)}/", file=out)
    if manifest.dead_letters:
        print(f"dead letters: {sum(d.rows for d in manifest.dead_letters)} under {manifest.uri('dead_letters')}/", file=out)
    print(
        f"{len(manifest.tasks)} tasks: read {totals['read']} rows ({totals['read_errors']} unreadable), "
        f"{totals['template_applications']} template applications -> written {totals['written']}, "
        f"duplicates {totals['duplicates']}, "
        + "".join(f"{c.replace('_', '-')} {totals[c]}, " for c in ("near_duplicates", "contaminated") if totals[c])
        + f"capped {totals['capped']}, failed {totals['failed']}"
        + (f", skipped by template filters {totals['skipped']}" if totals["skipped"] else ""),
        file=out,
    )
    for line in task_table(manifest):
        print(line, file=out)
    for line in contamination_lines(manifest):
        print(line, file=out)


def contamination_lines(manifest: Manifest) -> list[str]:
    """What the contamination check found, in a line or two (the per-task table is in the manifest)."""
    report = manifest.contamination
    if not report:
        return []
    found = {t: c for t, c in report["tasks"].items() if c["contaminated"]}
    checked = sum(c["checked"] for c in report["tasks"].values())
    if not found:
        return [f"contamination: none of {checked} train examples found in evaluation data ({report['ngram_words']}-word n-grams)"]
    total = sum(c["contaminated"] for c in found.values())
    what = "removed" if report["decontaminated"] else "kept (--decontaminate removes them)"
    tasks = ", ".join(f"{t} {c['contaminated']}" for t, c in sorted(found.items(), key=lambda kv: -kv[1]["contaminated"])[:5])
    return [f"contamination: {total} of {checked} train examples found in evaluation data, {what}: {tasks}"]


TABLE_COUNTERS = ("read", "template_applications", "written", "duplicates", "capped", "failed")
TABLE_ROWS = 10


def task_table(manifest: Manifest, limit: int = TABLE_ROWS) -> list[str]:
    """Per-task counts, the `limit` largest tasks by rows written, so a 60-task build stays a screenful.

    Taken from the manifest, not from Beam's metrics: the manifest's counts are the committed,
    accounting-checked ones (Dataflow's metrics may include retried bundles), and they are the
    same for every runner. The full table is in manifest.json."""
    ranked = sorted(manifest.tasks.items(), key=lambda item: (-item[1].counts["written"], item[0]))
    width = max(len("task"), *(len(name) for name, _ in ranked[:limit]))
    lines = ["task".ljust(width) + "".join(f"  {c:>{len(c)}}" for c in TABLE_COUNTERS)]
    lines += [name.ljust(width) + "".join(f"  {entry.counts[c]:>{len(c)}}" for c in TABLE_COUNTERS) for name, entry in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more tasks (every task's counts: {manifest.uri(MANIFEST_NAME)})")
    return lines


class _OwnFailuresFilter(logging.Filter):
    """Drops Beam's traceback log of a build that failed our own data checks: the CLI prints
    that failure itself, once, as a summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], (DataQualityError, AccountingError)))


_OWN_FAILURES = _OwnFailuresFilter()


class _WorkerNoiseFilter(logging.Filter):
    """Drops two warnings every multi-process DirectRunner worker relays at start-up and that say
    nothing about the build: Beam's own runner flags it hands its workers and they do not parse,
    and a missing semi-persistent directory that only matters for registered schema types."""

    NOISE = ("Discarding unparseable args: [\\'--pipeline_type_check\\', \\'--direct_runner_use_stacked_bundle\\']", "No semi_persistent_directory found")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


_WORKER_NOISE = _WorkerNoiseFilter()


def _without_beam_suffix(message: str) -> str:
    """Beam appends " [while running 'Step/Name']" to an exception from a step; the step is ours to name."""
    return re.sub(r" \[while running '[^']*'\]\s*$", "", message.strip())


def run_build_cli(argv: list[str], out: TextIO = sys.stdout, err: TextIO | None = None) -> int:
    """`flanforge build`: every problem found before work is launched is one line on stderr, exit code 2."""
    err = err or sys.stderr
    parser = _full_parser()
    if "--help-beam" in argv:
        parser.print_help(out)
        return 0
    if any(a in ("-h", "--help") for a in argv):
        _own_parser().print_help(out)
        return 0
    _, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"flanforge build: unrecognized arguments: {' '.join(unknown)} (see flanforge build --help)", file=err)
        return 2
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        # Beam 2.77 would otherwise try to download the Prism runner first; be explicit.
        argv = [*argv, "--runner=DirectRunner"]
    options = PipelineOptions(argv)
    logging.getLogger("apache_beam.runners.common").addFilter(_OWN_FAILURES)  # added once: the same object
    logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(_WORKER_NOISE)
    try:
        config = options.view_as(BuildOptions).to_config()
        check_launch(options, config)
        run = run_build(config, options, err)
    except (ValueError, SpecError, SourceError) as e:  # OutputLocked and StorageError are ValueErrors too
        print(f"flanforge build: {e}", file=err)
        return 2
    except (DataQualityError, AccountingError) as e:  # raised inside the pipeline's last step
        print(f"flanforge build: {_without_beam_suffix(str(e))}", file=err)
        return 1
    except UNREACHABLE as e:  # an outage during the build: nothing was published, the previous corpus stands
        print(f"flanforge build: {unreachable(e)}; the previous corpus is unchanged", file=err)
        return 1
    if run.manifest is None:
        print(unfinished_note(options, config.output), file=out)
        for line in run.summary:
            print(line, file=out)
        return 0
    print_summary(run.manifest, out)
    return 0
