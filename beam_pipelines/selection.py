"""What a build's `--tasks` names: specs of the catalog, or single tasks of a spec whose source
files each hold a task (NIv2: `niv2_<task file>`), by name or by shell pattern.

A file-task spec's tasks exist only once its source is listed, so the selection is resolved in
two steps: `select_tasks` on the catalog picks the specs to plan, and `TaskSelection.keep`, given
the tasks a spec's files turned into (sources.tasks_per_file), keeps the ones asked for and fails
on a name or pattern that matched none, so a typo never builds less than was asked.

    --tasks niv2                                 every task file of the niv2 source
    --tasks niv2_task1193_food_course_classification,rte
    --tasks 'niv2_task1*'                        the task files whose task names match
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, TypeVar

from flanforge.beam_pipelines.catalog import Catalog, SpecError
from flanforge.beam_pipelines.sources.kinds import KINDS

PATTERN = re.compile(r"[*?\[]")
T = TypeVar("T")


def is_pattern(name: str) -> bool:
    return bool(PATTERN.search(name))


@dataclass(frozen=True)
class TaskSelection:
    """The specs to plan, and for file-task specs named only in part, what their tasks must match."""

    specs: tuple[str, ...]
    parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # spec -> names or patterns of its tasks

    def keep(self, spec: str, tasks: Mapping[str, T]) -> dict[str, T]:
        """The tasks of `spec` (name -> its read shards) that were asked for."""
        wanted = self.parts.get(spec)
        if wanted is None:
            return dict(tasks)
        matched = {w: fnmatch.filter(tasks, w) if is_pattern(w) else [w] if w in tasks else [] for w in wanted}
        missing = [w for w, hits in matched.items() if not hits]
        if missing:
            shown = ", ".join(sorted(tasks)[:3]) + (", …" if len(tasks) > 3 else "")
            raise SpecError([
                f"--tasks {', '.join(missing)}: no file of {spec}'s source is that task "
                f"(its files give {len(tasks)} task(s): {shown or 'none'}; `--tasks {spec}` builds them all)"
            ])
        kept = {t for hits in matched.values() for t in hits}
        return {t: v for t, v in tasks.items() if t in kept}


def select_tasks(catalog: Catalog, names: Iterable[str]) -> TaskSelection:
    """Resolve --tasks against the catalog; a name that is neither a spec, nor a pattern matching
    one, nor a task of a file-task spec (it starts with that spec's name and `_`) is refused."""
    whole: set[str] = set()
    parts: dict[str, list[str]] = {}
    unknown = []
    file_specs = sorted(s.name for s in catalog.tasks.values() if KINDS[s.source.kind].file_task is not None)
    for name in names:
        if name in catalog.tasks:
            whole.add(name)
            continue
        specs = fnmatch.filter(catalog.tasks, name) if is_pattern(name) else []
        whole.update(specs)
        owners = [s for s in file_specs if name.startswith(f"{s}_")]
        for owner in owners:
            parts.setdefault(owner, []).append(name)
        if not specs and not owners:
            unknown.append(name)
    if unknown:
        raise SpecError([f"unknown task(s): {', '.join(unknown)} (see `flanforge validate` for the catalog)"])
    chosen = whole | set(parts)
    return TaskSelection(tuple(sorted(chosen)), {s: tuple(p) for s, p in parts.items() if s not in whole})
