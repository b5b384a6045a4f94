"""`flanforge validate` and `flanforge preview`: check and show the catalog without running Beam."""
from __future__ import annotations

from typing import Any, Mapping, TextIO

from flanforge.beam_pipelines.catalog import Catalog, SpecError, TaskSpec, load_catalog
from flanforge.beam_pipelines.render import CompiledTask, RenderError, RowError, iter_sample_problems


def catalog_problems(templates_dir: str | None) -> tuple[Catalog | None, list[str]]:
    """Load, schema-check, compile and sample-render every spec; return all problems found."""
    try:
        catalog = load_catalog(templates_dir)
    except SpecError as e:
        return None, e.problems
    return catalog, [p for spec in catalog.tasks.values() for p in spec_problems(spec)]


def spec_problems(spec: TaskSpec) -> list[str]:
    """What `flanforge validate` finds in one parsed spec: templates and expressions that do not
    compile, then problems rendering its sample rows (`flanforge studio` checks a draft with it)."""
    try:
        compiled = CompiledTask(spec)
    except SpecError as e:
        return e.problems
    return list(iter_sample_problems(compiled))


def run_validate(templates_dir: str | None, out: TextIO) -> int:
    catalog, problems = catalog_problems(templates_dir)
    for p in problems:
        print(p, file=out)
    if problems:
        print(f"{len(problems)} problem(s)", file=out)
        return 1
    assert catalog is not None
    n_templates = sum(len(t.templates) for t in catalog.tasks.values())
    print(
        f"ok: {len(catalog.tasks)} tasks in {len({t.cluster for t in catalog.tasks.values()})} clusters, "
        f"{n_templates} templates, every sample row renders",
        file=out,
    )
    return 0


def preview_rows(spec: TaskSpec, source: str, n: int) -> list[Mapping[str, Any]]:
    """The first `n` readable rows of `source` (PATH[#OPTIONS], as `build --source` takes it), in
    read order; a source that cannot be read is a SpecError naming it."""
    from flanforge.beam_pipelines.sources import SourceError, SourceRow, plan_reads, read_shard

    rows: list[Mapping[str, Any]] = []
    try:
        for shard in plan_reads(spec, demo=False, overrides={"train": source}):
            for item in read_shard(shard):
                if isinstance(item, SourceRow):
                    rows.append(item.row)
                if len(rows) == n:
                    return rows
    except SourceError as e:
        raise SpecError([str(e)]) from None
    return rows


def run_preview(templates_dir: str | None, task: str, template: str | None, n: int, out: TextIO, source: str | None = None) -> int:
    """Render a task's sample rows (or, with `source`, a file's first rows) through its templates."""
    catalog = load_catalog(templates_dir)
    if task not in catalog.tasks:
        raise SpecError([f"unknown task {task!r}; known: {', '.join(sorted(catalog.tasks))}"])
    compiled = CompiledTask(catalog.tasks[task])
    ids = compiled.spec.template_ids
    if template is not None and template not in ids:
        raise SpecError([f"task {task} has no template {template!r}; it has {', '.join(ids)}"])
    indices = [ids.index(template)] if template else list(range(len(ids)))
    rows = preview_rows(compiled.spec, source, n) if source else list(compiled.spec.samples[:n])
    if not rows:
        print(f"task {task} has no sample rows" if not source else f"{source}: no readable rows", file=out)
        if not source:
            print(f"show it on the rows of a file: flanforge preview {task} --source PATH", file=out)
        return 0
    label = "row" if source else "sample"
    for row_number, raw in enumerate(rows, start=1):
        try:
            variables = compiled.prepare(raw)
        except RowError as e:
            print(f"=== {label} #{row_number}: cannot prepare: {e}\n", file=out)
            continue
        if variables is None:
            print(f"=== {label} #{row_number}: dropped by the spec's filters\n", file=out)
            continue
        for i in indices:
            header = f"=== {label} #{row_number} · template {ids[i]}"
            try:
                if not compiled.applies(variables, i):
                    print(f"{header} · skipped: the template's filter leaves this row out\n", file=out)
                    continue
                r = compiled.render(variables, i)
            except RenderError as e:
                print(f"{header} · FAILED: {e}\n", file=out)
                continue
            print(f"{header} · {r.template_type}", file=out)
            print(f"--- inputs\n{r.inputs}\n--- targets\n{r.targets}", file=out)
            if r.options:
                print(f"--- options {list(r.options)} (answer_index {r.answer_index})", file=out)
            print(file=out)
    return 0
