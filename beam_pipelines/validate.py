"""`flanforge validate` and `flanforge preview`: check and show the catalog without running Beam."""
from __future__ import annotations

from typing import TextIO

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


def run_preview(templates_dir: str | None, task: str, template: str | None, n: int, out: TextIO) -> int:
    catalog = load_catalog(templates_dir)
    if task not in catalog.tasks:
        raise SpecError([f"unknown task {task!r}; known: {', '.join(sorted(catalog.tasks))}"])
    compiled = CompiledTask(catalog.tasks[task])
    ids = compiled.spec.template_ids
    if template is not None and template not in ids:
        raise SpecError([f"task {task} has no template {template!r}; it has {', '.join(ids)}"])
    indices = [ids.index(template)] if template else list(range(len(ids)))
    for row_number, raw in enumerate(compiled.spec.samples[:n], start=1):
        try:
            variables = compiled.prepare(raw)
        except RowError as e:
            print(f"=== sample #{row_number}: cannot prepare: {e}\n", file=out)
            continue
        if variables is None:
            print(f"=== sample #{row_number}: dropped by the spec's filters\n", file=out)
            continue
        for i in indices:
            header = f"=== sample #{row_number} · template {ids[i]}"
            try:
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
