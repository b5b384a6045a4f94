"""Read one source shard and render it into a spill file: the whole per-row work of a build.

Reading and rendering are fused so that rows never become Beam elements: a worker takes a read
shard, reads its rows, prepares and renders them, and hands the records to a `SpillWriter`. What
leaves the worker is a handful of file references, a hash summary, counts and dead letters.

For a capped split, rows are prepared (so filters and bad rows are counted as before) but only the
applications a shard can contribute to the cap are rendered (balance.py explains the rule);
the rest are counted as capped. The top-up pass renders exactly those that the first pass left
out. Nothing here imports Beam.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from flanforge.beam_pipelines.balance import BottomK, application_key
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
from flanforge.beam_pipelines.sources import ReadProblem, SourceRow, SourceShard, read_shard
from flanforge.beam_pipelines.spill import SpillWriter
from flanforge.schemas.records import EVAL_ZEROSHOT

Tally = Callable[[str, str, int], None]  # (task, counter, n)
Pools = Mapping[str, list[tuple[str, dict[str, Any]]]]  # task -> few-shot exemplar candidates
AppKey = tuple[int, int, int]  # (application key, row ordinal, application index): a total order


def dead_letter(stage: str, task: str, split: str, where: str, error: str, templates: int = 0) -> dict[str, Any]:
    """A dead-letter record: what failed, where, and how many template applications it cost."""
    return {"stage": stage, "task": task, "split": split, "where": where, "error": error, "template_applications": templates}


@dataclass(frozen=True)
class _Prepared:
    row: SourceRow
    variables: dict[str, Any]
    applications: list[Application]


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

    def _prepared_rows(self, shard: SourceShard, *, count: bool) -> Iterator[_Prepared]:
        """Rows that reach rendering; `count` tallies reads, filters and row failures (first pass only)."""
        name, few_shot = self._name, self._few_shot(shard)
        evaluation = shard.split == EVAL_ZEROSHOT
        plans: dict[tuple[int, ...], list[Application]] = {}  # template picks -> applications (few distinct)
        for item in read_shard(shard):
            if isinstance(item, ReadProblem):
                if count:
                    self._tally(name, "read_errors", 1)
                    self._dead(dead_letter("read", name, item.split, item.where, item.error))
                continue
            if count:
                self._tally(name, "read", 1)
            indices = self._mode.select(
                self.task.spec.template_ids, seed=self.settings.seed, task=name, example_id=item.example_id,
                shard=item.shard_key, ordinal=item.ordinal,
            )
            picks = tuple(indices)
            apps = plans.get(picks)
            if apps is None:
                apps = plans[picks] = plan_applications(
                    self.task, indices, options_variants=self.settings.options_variants, evaluation=evaluation, few_shot=few_shot
                )
            try:
                variables = self.task.prepare(item.row)
            except RowError as e:
                if count:
                    self._tally(name, "template_applications", len(apps))
                    self._failed(item, [str(e)] * len(apps))
                continue
            if variables is None:
                if count:
                    self._tally(name, "filtered", 1)
                continue
            if count:
                self._tally(name, "template_applications", len(apps))
            yield _Prepared(item, variables, apps)

    def _few_shot(self, shard: SourceShard) -> bool:
        # Exemplars come from the train split only, so evaluation rows never see one.
        return self.settings.few_shot > 0 and shard.split == "train"

    def _failed(self, row: SourceRow, failures: Sequence[str]) -> None:
        if not failures:
            return
        self._tally(self._name, "failed", len(failures))
        for error in sorted(set(failures)):
            self._dead(dead_letter("render", self._name, row.split, row.example_id, error, templates=failures.count(error)))

    def _render(self, p: _Prepared, apps: Sequence[Application], pools: Pools) -> RowOutcome:
        exemplars = (
            choose_exemplars(pools.get(self._name, []), seed=self.settings.seed, task=self._name, example_id=p.row.example_id)
            if self.settings.few_shot > 0 and p.row.split == "train"
            else []
        )
        outcome = render_prepared(
            self.task, p.variables, split=p.row.split, example_id=p.row.example_id, applications=apps,
            exemplars=exemplars, few_shot_k=self.settings.few_shot, separator=self.settings.few_shot_separator,
        )
        self._tally(self._name, "rendered", len(outcome.records))
        self._failed(p.row, outcome.failures)
        return outcome


    # -- passes ---------------------------------------------------------------------------------

    def render_all(self, shard: SourceShard, sink: SpillWriter, pools: Pools) -> None:
        """Every application of every row (an uncapped split)."""
        for p in self._prepared_rows(shard, count=True):
            for record in self._render(p, p.applications, pools).records:
                sink.add(record)

    def _keys(self, p: _Prepared) -> Iterator[tuple[str, AppKey, Application]]:
        seed, name, eid = self.settings.seed, self._name, p.row.example_id
        templates = self.task.spec.templates
        for j, app in enumerate(p.applications):
            tid = templates[app.template_index].id
            variant = f"{app.show_options}/{app.few_shot}"
            yield tid, (application_key(seed, name, eid, tid, variant), p.row.ordinal, j), app

    def _render_candidates(self, chosen: list[tuple[AppKey, _Prepared, Application]], sink: SpillWriter, pools: Pools) -> None:
        """Render chosen applications one by one (each record carries its own sampling key)."""
        for key, p, app in sorted(chosen, key=lambda c: c[0][1:]):
            for record in self._render(p, [app], pools).records:
                sink.add(record, sample_key=key[0])

    def render_candidates(self, shard: SourceShard, sink: SpillWriter, pools: Pools, quota: int) -> None:
        """First pass of a capped split: per template, only the `quota` smallest keys are rendered."""
        heaps: dict[str, BottomK[tuple[AppKey, _Prepared, Application]]] = collections.defaultdict(lambda: BottomK(quota))
        capped = 0
        for p in self._prepared_rows(shard, count=True):
            for tid, key, app in self._keys(p):
                if heaps[tid].push(key, (key, p, app)) is not None:
                    capped += 1
        self._tally(self._name, "capped", capped)
        self._render_candidates([c for h in heaps.values() for c in h.items()], sink, pools)

    def render_top_up(self, shard: SourceShard, sink: SpillWriter, pools: Pools, quota: int) -> None:
        """Top-up pass: render every application the first pass left out (it is recomputed, not stored)."""
        heaps: dict[str, BottomK[AppKey]] = collections.defaultdict(lambda: BottomK(quota))
        for p in self._prepared_rows(shard, count=False):
            for tid, key, _ in self._keys(p):
                heaps[tid].push(key, key)
        first_pass = {key for h in heaps.values() for key in h.items()}
        rendered = 0
        for p in self._prepared_rows(shard, count=False):
            for _, key, app in self._keys(p):
                if key not in first_pass:
                    rendered += 1
                    for record in self._render(p, [app], pools).records:
                        sink.add(record, sample_key=key[0])
        self._tally(self._name, "capped", -rendered)
