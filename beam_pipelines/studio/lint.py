"""A draft of a task's templates, rendered on a page of rows with `flanforge validate`'s findings.

Everything runs through the build's code: the draft is checked by catalog.parse_task_spec (the
schema and the cross-template rules) and compiled by render.CompiledTask in the sandbox, rows are
prepared and rendered by CompiledTask and render.render_prepared with the applications
render.plan_applications plans (render_few_shot for the few-shot variant), and the findings on
rows are render.iter_sample_problems'.

What the studio adds is attribution, so an editor can show a finding next to what it is about:
each template is loaded and compiled on its own first (a finding names the template, the field,
and for a syntax error its line and column), templates with problems are left out of the render
so the others still show, and validate's messages on rows are tied to their row and template.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any, Mapping, Sequence

import jinja2

from jinja2.meta import find_undeclared_variables

from flanforge.beam_pipelines.catalog import SpecError, parse_task_spec
from flanforge.beam_pipelines.render import (
    MAX_OUTPUT_CHARS,
    CompiledTask,
    RowError,
    choose_exemplars,
    iter_sample_problems,
    make_environment,
    plan_applications,
    render_prepared,
)
from flanforge.beam_pipelines.sandbox import RENDER_TIME_BUDGET_S
from flanforge.beam_pipelines.studio.positions import error_column
from flanforge.beam_pipelines.studio.yaml_roundtrip import TemplateEdit

_NAMED_TEMPLATE = re.compile(r"^template ([a-z0-9_]+)(?: field (\w+))?")
FEW_SHOT_SEED = 0  # exemplars are chosen as a build with --seed 0 would choose them from these rows


@dataclass(frozen=True)
class PageRow:
    """A source row on the page, with the example id the build would give it."""

    example_id: str
    row: Mapping[str, Any]


@dataclass(frozen=True)
class Finding:
    """One problem (or warning), tied to what it is about where that is known."""

    message: str
    template: int | None = None  # index into the draft's templates
    field: str | None = None  # inputs | targets | filter | id | ...
    row: int | None = None  # 1-based row on the page
    line: int | None = None
    column: int | None = None
    severity: str = "error"  # error | warning


@dataclass
class Cell:
    """One template applied to one row."""

    template_type: str = ""
    inputs: str = ""
    targets: str = ""
    options: list[str] = field(default_factory=list)
    answer_index: int = -1
    error: str = ""
    skipped: bool = False  # the template's own filter excludes the row
    ms: float = 0.0


@dataclass
class TemplateSummary:
    index: int
    id: str
    rendered: bool  # False: left out of the render because of its findings
    inputs_chars: list[int] = field(default_factory=list)  # [max, mean] over the page
    targets_chars: list[int] = field(default_factory=list)
    slowest_ms: float = 0.0


@dataclass
class RowStatus:
    number: int
    example_id: str
    row: Mapping[str, Any]
    status: str = "ok"  # ok | filtered | error
    error: str = ""


@dataclass
class Evaluation:
    findings: list[Finding]
    templates: list[TemplateSummary]
    rows: list[RowStatus]
    cells: list[list[Cell | None]]  # [row][template]; None where the template is not rendered
    limits: dict[str, float] = field(default_factory=lambda: {"max_output_chars": MAX_OUTPUT_CHARS, "render_budget_s": RENDER_TIME_BUDGET_S})


def _without_path(problem: str, path: str) -> str:
    return problem[len(path) + 2 :] if problem.startswith(f"{path}: ") else problem


# A compile problem as CompiledTask states it: "template ID field FIELD: line N: message".
_COMPILE_PROBLEM = re.compile(r"^template \S+ field ([\w/]+): (?:line (\d+): )?(.*)$", re.S)
COLUMN_FIELDS = ("inputs", "targets")  # compiled by render.make_environment() as written: columns can be placed


@dataclass(frozen=True)
class TemplateCheck:
    """One draft template checked on its own, the way the build would load and compile it (the
    spec around it with this template alone): its findings (`template` unset: the caller knows
    where it sits) and the variables it reads. It depends only on the spec and the template, so a
    caller may keep it while the other templates are edited."""

    findings: tuple[Finding, ...]
    variables: frozenset[str]


def check_template(data: Mapping[str, Any], path: str, draft: TemplateEdit) -> TemplateCheck:
    env = make_environment()
    try:
        CompiledTask(parse_task_spec({**data, "templates": [draft.as_spec()]}, path))
    except SpecError as e:
        return TemplateCheck(tuple(_compile_finding(_without_path(p, path), draft, env) for p in e.problems), frozenset())
    variables: frozenset[str] = frozenset()
    for field_name in COLUMN_FIELDS:
        source = draft.values.get(field_name)
        if isinstance(source, str) and source:
            variables |= find_undeclared_variables(env.parse(source))  # parsed only, never run
    return TemplateCheck((), variables)


def _compile_finding(text: str, draft: TemplateEdit, env: jinja2.Environment) -> Finding:
    found = _COMPILE_PROBLEM.match(text)
    if not found:
        return Finding(text)
    field_name, line, message = found.group(1), found.group(2), found.group(3)
    if line is None:
        return Finding(text, field=field_name)
    source = draft.values.get(field_name)
    column = None
    if field_name in COLUMN_FIELDS and isinstance(source, str):
        column = error_column(env, source, jinja2.TemplateSyntaxError(message, int(line)))
    return Finding(message, field=field_name, line=int(line), column=column)


def evaluate(
    data: Mapping[str, Any],
    path: str,
    drafts: Sequence[TemplateEdit],
    rows: Sequence[PageRow],
    *,
    few_shot: int = 0,
    no_options: bool = False,
    checks: Sequence[TemplateCheck] | None = None,
) -> Evaluation:
    """Check `drafts` as the templates of the spec `data` (its parsed YAML, from `path`) and render
    every template that passes on every row; `few_shot` > 0 renders each after that many exemplars
    from the other rows, `no_options` renders options templates without their options block.
    `checks` are the drafts' check_template results when the caller has them."""
    env = make_environment()
    checks = list(checks) if checks is not None else [check_template(data, path, d) for d in drafts]
    findings = [replace(f, template=i) for i, c in enumerate(checks) for f in c.findings]
    kept = [i for i, c in enumerate(checks) if not c.findings]
    kept, duplicate_ids = _unique_ids(drafts, kept)
    findings += duplicate_ids
    evaluation = Evaluation(findings, [TemplateSummary(i, d.id, i in kept) for i, d in enumerate(drafts)], [], [])
    evaluation.rows = [RowStatus(n, r.example_id, r.row) for n, r in enumerate(rows, start=1)]
    evaluation.cells = [[None] * len(drafts) for _ in rows]
    if not kept:
        return evaluation
    try:
        spec = parse_task_spec({**data, "templates": [drafts[i].as_spec() for i in kept]}, path)
        task = CompiledTask(replace(spec, samples=tuple(r.row for r in rows)))
    except SpecError as e:  # the spec around the templates: the editor cannot cause it, but say it
        evaluation.findings += [Finding(_without_path(p, path)) for p in e.problems]
        evaluation.templates = [replace(t, rendered=False) for t in evaluation.templates]
        return evaluation
    _render_page(task, kept, rows, evaluation, few_shot=few_shot, no_options=no_options)
    evaluation.findings += _row_findings(task, kept, path)
    evaluation.findings += _unknown_variables(checks, kept, drafts, task, rows, env)
    return evaluation


def _unique_ids(drafts: Sequence[TemplateEdit], kept: list[int]) -> tuple[list[int], list[Finding]]:
    """The catalog's rule that ids are unique in a file: a later template reusing an id is left out."""
    seen: dict[str, int] = {}
    out, findings = [], []
    for i in kept:
        first = seen.setdefault(str(drafts[i].id), i)
        if first == i:
            out.append(i)
        else:
            findings.append(Finding(f"template {drafts[i].id}: duplicate template id (template #{first + 1} has it)", i, "id"))
    return out, findings


def _variant(task: CompiledTask, index: int, *, few_shot: bool, no_options: bool):
    """The application the page shows for a template: as written, or its no-options variant where
    the build would derive one (--options-variants both), each optionally few-shot."""
    apps = plan_applications(task, [index], options_variants="both" if no_options else "template", evaluation=False, few_shot=few_shot)
    return [a for a in apps if a.few_shot == few_shot][-1]


def _render_page(task: CompiledTask, kept: list[int], rows: Sequence[PageRow], evaluation: Evaluation, *, few_shot: int, no_options: bool) -> None:
    pool = [(r.example_id, dict(r.row)) for r in rows]
    split = "train"
    for r, (row, status) in enumerate(zip(rows, evaluation.rows)):
        try:
            variables = task.prepare(row.row)
        except RowError as e:
            status.status, status.error = "error", str(e)
            continue
        if variables is None:
            status.status = "filtered"
            continue
        exemplars = choose_exemplars(pool, seed=FEW_SHOT_SEED, task=task.spec.name, example_id=row.example_id) if few_shot else []
        for position, index in enumerate(kept):
            app = _variant(task, position, few_shot=few_shot > 0, no_options=no_options)
            started = perf_counter()
            outcome = render_prepared(
                task, variables, split=split, example_id=row.example_id, applications=[app], exemplars=exemplars, few_shot_k=few_shot
            )
            cell = Cell(ms=round((perf_counter() - started) * 1000, 2))
            if outcome.records:
                record = outcome.records[0]
                cell.template_type, cell.inputs, cell.targets = record["template_type"], record["inputs"], record["targets"]
                cell.options, cell.answer_index = list(record["options"]), record["answer_index"]
            elif outcome.failures:
                cell.error = outcome.failures[0]
            else:
                cell.skipped = True
            evaluation.cells[r][index] = cell
    for summary in evaluation.templates:
        cells = [row_cells[summary.index] for row_cells in evaluation.cells if row_cells[summary.index] is not None]
        done = [c for c in cells if not (c.error or c.skipped)]
        if done:
            summary.inputs_chars = _max_mean([len(c.inputs) for c in done])
            summary.targets_chars = _max_mean([len(c.targets) for c in done])
        summary.slowest_ms = max((c.ms for c in cells), default=0.0)


def _max_mean(values: list[int]) -> list[int]:
    return [max(values), round(sum(values) / len(values))]


def _row_findings(task: CompiledTask, kept: list[int], path: str) -> list[Finding]:
    """`flanforge validate`'s findings on these rows (iter_sample_problems), tied to row and template."""
    index_of = {task.spec.templates[p].id: i for p, i in enumerate(kept)}
    prefix = re.compile(rf"^{re.escape(task.spec.path)}: sample #(\d+): ")
    out = []
    for problem in iter_sample_problems(task):
        found = prefix.match(problem)
        row = int(found.group(1)) if found else None
        text = problem[found.end() :] if found else _without_path(problem, path)
        named = _NAMED_TEMPLATE.match(text)
        template = index_of.get(named.group(1)) if named else None
        out.append(Finding(text, template, named.group(2) if named else None, row=row))
    return out


def _unknown_variables(
    checks: Sequence[TemplateCheck], kept: list[int], drafts: Sequence[TemplateEdit], task: CompiledTask, rows: Sequence[PageRow], env: jinja2.Environment
) -> list[Finding]:
    """Variables a template reads that no prepared row on the page has, in any branch (a render
    fails on them only when the branch runs: StrictUndefined)."""
    known: set[str] = set(env.globals)
    prepared = 0
    for row in rows:
        try:
            variables = task.prepare(row.row)
        except RowError:
            continue
        if variables is not None:
            known |= set(variables)
            prepared += 1
    if not prepared:
        return []
    have = ", ".join(sorted(known - set(env.globals)))
    return [
        Finding(f"template {drafts[i].id} reads {name!r}, which no row on this page has (rows have: {have})", i, severity="warning")
        for i in kept
        for name in sorted(checks[i].variables - known)
    ]
