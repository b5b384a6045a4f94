"""What the bounded sandbox (beam_pipelines/sandbox.py) costs on the render hot path.

Renders the bundled SST-2 spec's templates over the first 20,000 rows of GLUE's SST-2 train.tsv,
every template per row (as `--template-mode all` does), with render.py as it is (BoundedSandbox)
and with render.py as the last commit has it (Jinja's plain ImmutableSandboxedEnvironment), loaded
from `git show HEAD:beam_pipelines/render.py` under another module name; first checks that both
produce identical records.

The machine this runs on is shared, and whole-run timings swing by tens of percent from one run to
the next, so the comparison is made chunk by chunk: the rows are cut into chunks of --chunk rows,
each chunk is run --repeat times by each version, alternating which goes first, and each version's
best time per chunk (process CPU time) is summed over all chunks. The ratio of the sums is the
cost. Measured for:

- render_row: preparing the row (its derived field and filter) and rendering every template into a
  record, the per-row work of a worker;
- CompiledTask.render only, over rows prepared beforehand: the part the sandbox changes;
- every bundled task's sample rows through all its templates (loops, filters, calls: what SST-2's
  templates lack), per task.

    .venv/bin/python benchmarks/sandbox_cost.py [--rows 20000] [--chunk 500] [--repeat 5] [--tsv PATH]

Writes nothing; benchmarks/results/sandbox_cost.txt holds a run's output.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

from flanforge.beam_pipelines import render as current
from flanforge.beam_pipelines.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent
TSV = Path("/work/shared/realdata/sst2/train.tsv")
PLAIN, BOUNDED = "plain (HEAD render.py)", "bounded (render.py + sandbox.py)"


def head_render() -> ModuleType:
    """render.py as committed at HEAD, imported as flanforge.beam_pipelines._render_head."""
    source = subprocess.run(
        ["git", "show", "HEAD:beam_pipelines/render.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    name = "flanforge.beam_pipelines._render_head"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    exec(compile(source, "HEAD:beam_pipelines/render.py", "exec"), module.__dict__)
    return module


def read_rows(path: Path, limit: int) -> list[dict]:
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
            if n == limit:
                break
            rows.append({"idx": n, "sentence": row["sentence"], "label": int(row["label"])})
    return rows


def best_of_alternating(work: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Each version's best CPU time over `repeat` runs, the versions alternating who goes first."""
    best = {label: float("inf") for label in work}
    labels = list(work)
    for r in range(repeat):
        for label in labels if r % 2 == 0 else labels[::-1]:
            start = time.process_time()
            work[label]()
            best[label] = min(best[label], time.process_time() - start)
    return best


def chunked(jobs: dict[str, list[Callable[[], object]]], repeat: int) -> dict[str, float]:
    """Sum over chunks of each version's best time on that chunk (jobs[label][i] is chunk i)."""
    totals = {label: 0.0 for label in jobs}
    for i in range(len(next(iter(jobs.values())))):
        for label, seconds in best_of_alternating({label: chunks[i] for label, chunks in jobs.items()}, repeat).items():
            totals[label] += seconds
    return totals


def report(title: str, totals: dict[str, float], unit: int, unit_name: str) -> None:
    print(title)
    for label, seconds in totals.items():
        print(f"  {label:34s} {seconds:8.3f} s  ({seconds / unit * 1e6:.2f} us/{unit_name})")
    print(f"  ratio bounded/plain: {totals[BOUNDED] / totals[PLAIN]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tsv", type=Path, default=TSV)
    args = parser.parse_args()

    spec = load_catalog().tasks["sst2"]
    rows = read_rows(args.tsv, args.rows)
    modules = {PLAIN: head_render(), BOUNDED: current}
    tasks = {label: m.CompiledTask(spec) for label, m in modules.items()}
    n_templates = tasks[PLAIN].n_templates
    applications = {
        label: m.plan_applications(tasks[label], list(range(n_templates)), options_variants="template", evaluation=False)
        for label, m in modules.items()
    }

    def render_rows(label: str, part: list[dict], first: int) -> list:
        task, apps, render_row = tasks[label], applications[label], modules[label].render_row
        return [render_row(task, raw, split="train", example_id=str(first + n), applications=apps) for n, raw in enumerate(part)]

    outputs = {label: render_rows(label, rows, 0) for label in modules}
    identical = [o.records for o in outputs[PLAIN]] == [o.records for o in outputs[BOUNDED]] and [
        o.failures for o in outputs[PLAIN]
    ] == [o.failures for o in outputs[BOUNDED]]
    records = sum(len(o.records) for o in outputs[BOUNDED])
    starts = range(0, len(rows), args.chunk)

    print(f"SST-2: {len(rows)} rows of {args.tsv.name}, {n_templates} templates each, {records} records; identical records and failures: {identical}")
    print(f"python {sys.version.split()[0]}; chunks of {args.chunk} rows, each run {args.repeat} times per version, alternating; CPU time")

    row_jobs = {
        label: [(lambda label=label, s=s: render_rows(label, rows[s : s + args.chunk], s)) for s in starts] for label in modules
    }
    report("render_row (prepare + render every template + record: a worker's per-row work)", chunked(row_jobs, args.repeat), records, "record")

    prepared = {label: [tasks[label].prepare(raw) for raw in rows] for label in modules}

    def render_only(label: str, part: list) -> None:
        render = tasks[label].render
        for variables in part:
            if variables is not None:
                for i in range(n_templates):
                    render(variables, i)

    render_jobs = {label: [(lambda label=label, s=s: render_only(label, prepared[label][s : s + args.chunk])) for s in starts] for label in modules}
    report("CompiledTask.render only (rows prepared beforehand)", chunked(render_jobs, args.repeat), records, "record")

    catalog = load_catalog()
    catalog_jobs: dict[str, list[Callable[[], object]]] = {label: [] for label in modules}
    renders = 0
    for task_spec in catalog.tasks.values():
        for label, module in modules.items():
            task = module.CompiledTask(task_spec)
            calls = []
            for raw in task_spec.samples:
                try:
                    variables = task.prepare(raw)
                except module.RowError:
                    continue
                if variables is not None:
                    calls.extend((task.render, variables, i) for i in range(task.n_templates))

            def run(calls: list = calls) -> None:
                for _ in range(20):
                    for render, variables, i in calls:
                        try:
                            render(variables, i)
                        except Exception:
                            pass

            catalog_jobs[label].append(run)
        renders += 20 * len(calls)
    report(
        f"every bundled task ({len(catalog.tasks)}): its sample rows through all its templates, 20 times",
        chunked(catalog_jobs, args.repeat),
        renders,
        "render",
    )


if __name__ == "__main__":
    main()
