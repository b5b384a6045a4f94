"""How much of promptsource's collection flanforge takes as it is: a report in Markdown.

1. The whole collection (`../shared/promptsource/templates/`, every templates.yaml): files,
   prompts, what the importer makes of them, and how many prompts compile in flanforge's sandbox
   (each prompt compiled on its own; the rest grouped by reason).
2. The datasets with rows in `../shared/realdata/` (SuperGLUE BoolQ, CB, COPA, RTE, WSC, GLUE
   SST-2, ARC): each prompt of the matching task rendered on every validation row, twice: on the
   rows as the files have them (read by flanforge's own readers, as `--source TASK=FILE` reads
   them), and on the same rows in the Hugging Face hub's layout that promptsource's templates were
   written for (converted by the small functions below, each saying what differs). A prompt
   "renders" on a set of rows when no row fails it (rows its own logic leaves without a target are
   skipped, as in P3); the failures are grouped by reason.
3. Agreement with promptsource's algorithm: every render of part 2 (hub layout) of a prompt that
   does not use `choice` (unseeded in promptsource) is compared with promptsource's Template.apply
   redone in plain Jinja from its documented steps (Jinja's default environment with `zip`, each
   `}}` given `| string | truncate(2048)`, row text's ||| protected, answer_choices rendered and
   split, the output split on ||| and stripped).

    .venv/bin/python benchmarks/promptsource_coverage.py [--collection DIR] [--realdata DIR]

Writes nothing; docs/PROMPTSOURCE.md holds a run's output.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import jinja2

from flanforge.beam_pipelines.catalog import SpecError, TaskSpec, parse_task_spec
from flanforge.beam_pipelines.importers import promptsource
from flanforge.beam_pipelines.render import CompiledTask, PromptSkipped, RenderError, RowError
from flanforge.beam_pipelines.sources import ReadProblem, plan_reads, read_shard

SHARED = Path(__file__).resolve().parents[2] / "shared"


# --- the realdata files and their hub layout ------------------------------------------------------


def labels(mapping: dict[Any, int]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda row: {**row, "label": mapping[row["label"]]}


def wsc_hub(row: dict[str, Any]) -> dict[str, Any]:
    return {"text": row["text"], **row["target"], "idx": row["idx"], "label": int(row["label"])}


def arc_hub(row: dict[str, Any]) -> dict[str, Any]:
    choices = row["question"]["choices"]
    return {"id": row["id"], "question": row["question"]["stem"], "answerKey": row["answerKey"],
            "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]}}


def sst2_hub(row: dict[str, Any], number: int) -> dict[str, Any]:
    return {"sentence": row["sentence"], "label": int(row["label"]), "idx": number}


# task -> (realdata file, what differs from the hub's layout, the conversion (row, its number) -> hub row)
REALDATA: dict[str, tuple[str, str, Callable[[dict[str, Any], int], dict[str, Any]]]] = {
    "p3_super_glue_boolq": ("superglue_BoolQ/val.jsonl", "label true/false, the hub's 1/0", lambda r, n: labels({False: 0, True: 1})(r)),
    "p3_super_glue_cb": ("superglue_CB/val.jsonl", "label names, the hub's 0/1/2", lambda r, n: labels({"entailment": 0, "contradiction": 1, "neutral": 2})(r)),
    "p3_super_glue_copa": ("superglue_COPA/val.jsonl", "none", lambda r, n: r),
    "p3_super_glue_rte": ("superglue_RTE/val.jsonl", "label names, the hub's 0/1", lambda r, n: labels({"entailment": 0, "not_entailment": 1})(r)),
    "p3_super_glue_wsc_fixed": ("superglue_WSC/val.jsonl", "spans nested under `target`, label true/false", lambda r, n: wsc_hub(r)),
    "p3_glue_sst2": ("sst2/validation.tsv", "label a text cell, no idx", sst2_hub),
    "p3_ai2_arc_arc_challenge": ("arc_challenge/ARC-Challenge-Dev.jsonl", "question {stem, choices: [{text, label}]}, the hub's question + choices {text: [], label: []}", lambda r, n: arc_hub(r)),
    "p3_ai2_arc_arc_easy": ("arc_easy/ARC-Easy-Dev.jsonl", "the same as ARC-Challenge", lambda r, n: arc_hub(r)),
}


def read_as_shipped(spec: TaskSpec, path: Path) -> list[dict[str, Any]]:
    """The file's rows exactly as `flanforge build --source TASK=FILE` reads them."""
    rows = []
    for shard in plan_reads(spec, demo=False, overrides={"validation": str(path)}):
        for item in read_shard(shard):
            if isinstance(item, ReadProblem):
                raise SystemExit(f"{path}: unreadable record: {item.error}")
            rows.append(item.row)
    return rows


# --- promptsource's Template.apply in plain Jinja (for the agreement check) ------------------------

_PLAIN = jinja2.Environment(loader=jinja2.BaseLoader())
_PLAIN.globals["zip"] = zip
_GUARD = "<pipe-guard>"
_USES_CHOICE = re.compile(r"\|\s*choice\b")


@functools.lru_cache(maxsize=None)
def plain_template(source: str) -> jinja2.Template:
    return _PLAIN.from_string(source)


def promptsource_apply(jinja: str, answer_choices: str | None, row: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    guarded = {k: v.replace("|||", _GUARD) if isinstance(v, str) else v for k, v in row.items()}
    choices = None
    if answer_choices is not None:
        text = plain_template(answer_choices).render(**guarded)
        choices = [c.strip().replace(_GUARD, "|||") for c in text.split("|||")]
    output = plain_template(jinja.replace("}}", " | string | truncate(2048) }}")).render(**guarded, answer_choices=choices)
    return [part.replace(_GUARD, "|||").strip() for part in output.split("|||")], choices


# --- reporting -----------------------------------------------------------------------------------


def reason(message: str) -> str:
    """A failure message without what is particular to a row or template, so failures group."""
    text = re.sub(r"^template \S+ (field \S+: )?", "", message)
    return re.sub(r"\d+", "N", text)[:120]


def one_template(spec: TaskSpec, index: int) -> TaskSpec:
    return dataclasses.replace(spec, templates=(spec.templates[index],))


def collection_report(root: Path) -> list[TaskSpec]:
    started = time.perf_counter()
    files = promptsource.template_files(str(root))
    imported = promptsource.import_collection(root)
    specs = [parse_task_spec(data, path) for path, data in imported]
    prompts = [t for s in specs for t in s.templates]
    failures: Counter[str] = Counter()
    compiled = 0
    for spec in specs:
        for i in range(len(spec.templates)):
            try:
                CompiledTask(one_template(spec, i))
                compiled += 1
            except SpecError as e:
                failures.update(reason(p.split(": ", 1)[1]) for p in e.problems)
    clusters = Counter(s.cluster for s in specs)
    print("## The whole collection\n")
    print("| | count |\n|---|---|")
    print(f"| templates.yaml files | {len(files)} |")
    print(f"| dataset names (top-level folders: {len({Path(f).relative_to(root).parts[0] for f in files})}) | {len({s.promptsource['dataset'] for s in specs})} |")
    print(f"| tasks imported (one per file) | {len(specs)} |")
    print(f"| prompts | {len(prompts)} |")
    print(f"| prompts with answer_choices (options) | {sum(t.answer_choices is not None for t in prompts)} |")
    print(f"| prompts using `choice` / `most_frequent` / `zip(` | {sum(bool(_USES_CHOICE.search(t.jinja or '')) for t in prompts)} / "
          f"{sum('most_frequent' in (t.jinja or '') for t in prompts)} / {sum('zip(' in (t.jinja or '') for t in prompts)} |")
    print(f"| prompts that compile in flanforge's sandbox | {compiled} |")
    print(f"| prompts that do not | {len(prompts) - compiled} |")
    for text, n in failures.most_common():
        print(f"| - {text} | {n} |")
    print(f"\nTasks per cluster: {', '.join(f'{c} {n}' for c, n in sorted(clusters.items()))}. "
          f"(import, schema check and compile: {time.perf_counter() - started:.1f} s)\n")
    return specs


def render_all(task: CompiledTask, rows: Iterable[dict[str, Any]]) -> tuple[list[Counter[str]], Counter[str], list[list[Any]]]:
    """Per template: rendered / skipped / failed counts; failure reasons; and each row's renders."""
    n = task.n_templates
    counts = [Counter() for _ in range(n)]
    reasons: Counter[str] = Counter()
    renders: list[list[Any]] = []
    for number, row in enumerate(rows):
        try:
            prepared = task.prepare(row)
        except RowError as e:
            for c in counts:
                c["failed"] += 1
            reasons[reason(str(e))] += n
            renders.append([None] * n)
            continue
        out = []
        for i in range(n):
            try:
                out.append(task.render(prepared, i, seed=0, example_id=f"validation:{number}"))
                counts[i]["rendered"] += 1
            except PromptSkipped:
                out.append("skipped")
                counts[i]["skipped"] += 1
            except RenderError as e:
                out.append(None)
                counts[i]["failed"] += 1
                reasons[reason(str(e))] += 1
        renders.append(out)
    return counts, reasons, renders


def agreement(spec: TaskSpec, rows: list[dict[str, Any]], renders: list[list[Any]]) -> tuple[int, int, int]:
    """(renders compared, identical, prompts left out for using choice)."""
    compared = same = 0
    left_out = 0
    for i, t in enumerate(spec.templates):
        if _USES_CHOICE.search(t.jinja or "") or (t.answer_choices and _USES_CHOICE.search(t.answer_choices)):
            left_out += 1
            continue
        for row, out in zip(rows, renders):
            mine = out[i]
            if mine is None:
                continue
            parts, choices = promptsource_apply(t.jinja or "", t.answer_choices, row)
            compared += 1
            if mine == "skipped":
                same += len(parts) != 2 or not parts[0] or not parts[1]
            else:
                same += parts == [mine.inputs, mine.targets] and (choices is None or list(mine.options) == choices)
    return compared, same, left_out


def realdata_report(specs: list[TaskSpec], realdata: Path) -> None:
    by_name = {s.name: s for s in specs}
    print("## On real rows (`../shared/realdata/`, validation files)\n")
    print("A prompt renders on a set of rows when none of them fails it (a row its own logic leaves without a target is skipped).\n")
    print("| task | rows | prompts | render as shipped | render in hub layout | records (hub layout) | skipped | what differs from the hub's layout |")
    print("|---|---|---|---|---|---|---|---|")
    shipped_reasons: Counter[str] = Counter()
    hub_reasons: Counter[str] = Counter()
    totals = Counter()
    for name, (file, differs, to_hub) in REALDATA.items():
        spec = by_name[name]
        task = CompiledTask(spec)
        shipped = read_as_shipped(spec, realdata / file)
        hub = [to_hub(row, n) for n, row in enumerate(shipped)]
        counts_shipped, reasons, _ = render_all(task, shipped)
        shipped_reasons.update({f"{name}: {r}": n for r, n in reasons.items()})
        counts_hub, reasons, renders = render_all(task, hub)
        hub_reasons.update({f"{name}: {r}": n for r, n in reasons.items()})
        ok_shipped = sum(c["failed"] == 0 for c in counts_shipped)
        ok_hub = sum(c["failed"] == 0 for c in counts_hub)
        records = sum(c["rendered"] for c in counts_hub)
        skipped = sum(c["skipped"] for c in counts_hub)
        compared, same, left_out = agreement(spec, hub, renders)
        totals.update(prompts=task.n_templates, shipped=ok_shipped, hub=ok_hub, compared=compared, same=same, left_out=left_out, records=records)
        print(f"| {name} | {len(shipped)} | {task.n_templates} | {ok_shipped} | {ok_hub} | {records} | {skipped} | {differs} |")
    print(f"| **all** | | **{totals['prompts']}** | **{totals['shipped']}** | **{totals['hub']}** | {totals['records']} | | |\n")
    for title, reasons in (("as shipped", shipped_reasons), ("in hub layout", hub_reasons)):
        print(f"Failures {title} (template applications, by task and reason):" if reasons else f"Failures {title}: none.")
        for text, n in reasons.most_common(20):
            print(f"- {n}: {text}")
        print()
    print(f"Agreement with promptsource's algorithm in plain Jinja (hub layout): {totals['same']} of {totals['compared']} renders identical "
          f"({totals['left_out']} prompts that use `choice` left out: promptsource's is unseeded).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", type=Path, default=SHARED / "promptsource" / "templates")
    parser.add_argument("--realdata", type=Path, default=SHARED / "realdata")
    args = parser.parse_args()
    specs = collection_report(args.collection)
    realdata_report(specs, args.realdata)


if __name__ == "__main__":
    main()
