"""Read one source shard and render it into a spill file: the whole per-row work of a build.

Reading and rendering are fused so that rows never become Beam elements: a worker takes a read
shard, reads its rows, prepares and renders them, and hands the records to a `SpillWriter`. What
leaves the worker is a handful of file references, a hash summary, counts and dead letters.

For a capped split, rows are prepared (so filters and bad rows are counted as before) but only the
applications a shard can contribute to the cap are rendered (balance.py explains the rule);
the rest are counted as capped. The top-up pass renders exactly those that the first pass left
out. This is plain Python, tested without a runner: `transforms.RenderShards` is the Beam wrapper
(files are still reached through storage.py, i.e. Beam's FileSystems).
"""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from flanforge.beam_pipelines.balance import application_key, application_keys, application_salt, bottom_k, row_key
from flanforge.beam_pipelines.render import (
    Application,
    CompiledTask,
    RenderSettings,
    RowError,
    RowOutcome,
    choose_exemplars,
    plan_applications,
    render_prepared,
)
from flanforge.beam_pipelines.sources import ReadProblem, SourceRow, SourceShard, read_rows_at, read_shard
from flanforge.beam_pipelines.sources.base import quote
from flanforge.schemas.records import EVAL_ZEROSHOT

Tally = Callable[[str, str, int], None]  # (task, counter, n)


class RecordSink(Protocol):
    """Where rendered records go: a SpillWriter (or one that also sketches what it spills)."""

    def add(self, record: dict[str, Any], sample_key: int | None = None) -> None: ...


Pools = Mapping[str, list[tuple[str, dict[str, Any]]]]  # task -> few-shot exemplar candidates


def row_text(row: Mapping[str, Any]) -> str:
    """A failed row as a dead letter quotes it: JSON, truncated (a row nested too deeply to encode is said to be)."""
    try:
        return quote(json.dumps(row, ensure_ascii=False, default=repr))
    except (RecursionError, ValueError):
        return "<the row is nested too deeply to quote>"


def dead_letter(stage: str, task: str, split: str, where: str, error: str, templates: int = 0, text: str = "") -> dict[str, Any]:
    """A dead-letter record: what failed, where (file and line, or example id), how many template
    applications it cost, and for a record that could not be read, its text (truncated)."""
    letter = {"stage": stage, "task": task, "split": split, "where": where, "error": error, "template_applications": templates}
    if text:
        letter["text"] = text
    return letter


@dataclass(frozen=True)
class _Plan:
    """The applications of a row, and for caps each one's template id and key salt."""

    applications: list[Application]
    salts: list[tuple[str, int]]


@dataclass(frozen=True)
class _Prepared:
    row: SourceRow
    variables: dict[str, Any]
    plan: _Plan

    @property
    def applications(self) -> list[Application]:
        return self.plan.applications


class ShardRenderer:
    """Renders read shards of one task; counts through `tally`, dead letters through `dead`."""

    def __init__(self, task: CompiledTask, settings: RenderSettings, tally: Tally, dead: Callable[[dict[str, Any]], None]):
        self.task = task
        self.settings = settings
        self._mode = settings.mode
        self._tally = tally
        self._dead = dead
        self._name = task.spec.name

    # -- rows -----------------------------------------------------------------------------------

    def _prepared_rows(
        self, shard: SourceShard, *, count: bool, rows: Iterable[SourceRow | ReadProblem] | None = None
    ) -> Iterator[_Prepared]:
        """Rows of the shard (or just `rows` of it) that reach rendering; `count` tallies reads,
        filters and row failures (the first pass over a shard only)."""
        name, few_shot = self._name, self._few_shot(shard)
        evaluation = shard.split == EVAL_ZEROSHOT
        template_ids, seed, select, prepare = self.task.spec.template_ids, self.settings.seed, self._mode.select, self.task.prepare
        plans: dict[tuple[int, ...], _Plan] = {}  # template picks -> applications (few distinct)
        counts: collections.Counter[str] = collections.Counter()  # tallied once at the end, not per row
        try:
            for item in read_shard(shard) if rows is None else rows:
                if isinstance(item, ReadProblem):
                    if count:
                        counts["read_errors"] += 1
                        self._dead(dead_letter("read", name, item.split, item.where, item.error, text=item.text))
                    continue
                counts["read"] += 1
                indices = select(template_ids, seed=seed, task=name, example_id=item.example_id, shard=item.shard_key, ordinal=item.ordinal)
                picks = tuple(indices)
                plan = plans.get(picks)
                if plan is None:
                    plan = plans[picks] = self._plan(indices, evaluation, few_shot)
                try:
                    variables = prepare(item.row)
                except RowError as e:
                    counts["template_applications"] += len(plan.applications)
                    if count:
                        self._failed(item, [str(e)] * len(plan.applications))
                    continue
                if variables is None:
                    counts["filtered"] += 1
                    continue
                counts["template_applications"] += len(plan.applications)
                yield _Prepared(item, variables, plan)
        finally:
            if count:
                for counter, n in counts.items():
                    self._tally(name, counter, n)

    def _plan(self, indices: list[int], evaluation: bool, few_shot: bool) -> _Plan:
        apps = plan_applications(self.task, indices, options_variants=self.settings.options_variants, evaluation=evaluation, few_shot=few_shot)
        templates = self.task.spec.templates
        salts = []
        for app in apps:
            tid = templates[app.template_index].id
            salts.append((tid, application_salt(self.settings.seed, tid, f"{app.show_options}/{app.few_shot}")))
        return _Plan(apps, salts)

    def _few_shot(self, shard: SourceShard) -> bool:
        # Exemplars come from the train split only, so evaluation rows never see one.
        return self.settings.few_shot > 0 and shard.split == "train"

    def _failed(self, row: SourceRow, failures: Sequence[str]) -> None:
        if not failures:
            return
        self._tally(self._name, "failed", len(failures))
        for error in sorted(set(failures)):
            self._dead(
                dead_letter("render", self._name, row.split, row.example_id, error, templates=failures.count(error), text=row_text(row.row))
            )

    def _render(self, p: _Prepared, apps: Sequence[Application], pools: Pools) -> RowOutcome:
        exemplars = (
            choose_exemplars(pools.get(self._name, []), seed=self.settings.seed, task=self._name, example_id=p.row.example_id)
            if self.settings.few_shot > 0 and p.row.split == "train"
            else []
        )
        outcome = render_prepared(
            self.task, p.variables, split=p.row.split, example_id=p.row.example_id, applications=apps,
            exemplars=exemplars, few_shot_k=self.settings.few_shot, separator=self.settings.few_shot_separator, seed=self.settings.seed,
        )
        self._tally(self._name, "rendered", len(outcome.records))
        if outcome.skipped:
            self._tally(self._name, "skipped", outcome.skipped)
        self._failed(p.row, outcome.failures)
        return outcome


    # -- passes ---------------------------------------------------------------------------------

    def render_all(self, shard: SourceShard, sink: RecordSink, pools: Pools) -> None:
        """Every application of every row (an uncapped split)."""
        for p in self._prepared_rows(shard, count=True):
            for record in self._render(p, p.applications, pools).records:
                sink.add(record)

    def _select(self, shard: SourceShard, quota: int, *, count: bool) -> tuple[dict[int, dict[int, int]], dict[int, int], int]:
        """The first pass's choice: row ordinal -> {application index: key} for the `quota` smallest
        keys of each template, the chosen rows' positions (position -> ordinal), and how many
        applications were left out. Only keys are kept (8 bytes a row), never rows, and the keys
        are computed a whole shard at a time."""
        seed, name = self.settings.seed, self._name
        ordinals: list[int] = []
        positions: dict[int, int] = {}  # ordinal -> position
        rows: list[int] = []
        plan_of: list[int] = []
        plans: dict[int, _Plan] = {}
        for p in self._prepared_rows(shard, count=count):
            ordinals.append(p.row.ordinal)
            positions[p.row.ordinal] = p.row.position
            rows.append(row_key(seed, name, p.row.example_id))
            plan_of.append(id(p.plan))
            plans.setdefault(id(p.plan), p.plan)
        ordinal_arr = np.array(ordinals, dtype=np.int64)
        row_arr = np.array(rows, dtype=np.uint64)
        plan_arr = np.array(plan_of, dtype=np.int64)
        by_template: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = collections.defaultdict(list)
        for plan_id, plan in plans.items():
            mine = plan_arr == plan_id
            for j, (tid, salt) in enumerate(plan.salts):
                by_template[tid].append((application_keys(row_arr[mine], salt), ordinal_arr[mine], np.full(int(mine.sum()), j)))
        chosen: dict[int, dict[int, int]] = collections.defaultdict(dict)
        total = 0
        for parts in by_template.values():
            keys, ords, apps = (np.concatenate(x) for x in zip(*parts))
            total += len(keys)
            for at in bottom_k(keys, ords, apps, quota):
                chosen[int(ords[at])][int(apps[at])] = int(keys[at])
        return chosen, {positions[o]: o for o in chosen}, total - sum(len(v) for v in chosen.values())

    def _render_chosen(self, p: _Prepared, chosen: Mapping[int, int], sink: RecordSink, pools: Pools) -> None:
        """Render some applications of a row one by one (each record carries its own sampling key)."""
        for j in sorted(chosen):
            for record in self._render(p, [p.applications[j]], pools).records:
                sink.add(record, sample_key=chosen[j])

    def render_candidates(self, shard: SourceShard, sink: RecordSink, pools: Pools, quota: int) -> None:
        """First pass of a capped split: per template, only the `quota` smallest keys are rendered."""
        chosen, where, left_out = self._select(shard, quota, count=True)
        self._tally(self._name, "capped", left_out)
        for p in self._prepared_rows(shard, count=False, rows=read_rows_at(shard, where)):
            self._render_chosen(p, chosen[p.row.ordinal], sink, pools)

    def render_top_up(self, shard: SourceShard, sink: RecordSink, pools: Pools, quota: int) -> None:
        """Top-up pass: render every application the first pass left out (its choice is recomputed, not stored)."""
        first_pass, _, _ = self._select(shard, quota, count=False)
        rendered = 0
        seed, name = self.settings.seed, self._name
        for p in self._prepared_rows(shard, count=False):
            taken = first_pass.get(p.row.ordinal, {})
            row = row_key(seed, name, p.row.example_id)
            rest = {j: application_key(row, salt) for j, (_, salt) in enumerate(p.plan.salts) if j not in taken}
            rendered += len(rest)
            self._render_chosen(p, rest, sink, pools)
        self._tally(self._name, "capped", -rendered)
