"""A synthetic corpus the size of FLAN 2021's inputs, for measuring a full-recipe build offline.

No machine here can download the ~70 source datasets, but what a build costs depends mostly on
how many rows each task has and what they look like. So for every task of the bundled catalog
this writes OUT/<task>/train.jsonl and OUT/<task>/validation.jsonl with the row count of the real
dataset's split (TRAIN_ROWS, VALIDATION_ROWS below; validation capped at 10,000), times
`--scale`. The rows are the task's own sample rows (from its spec), cycled, so every template
renders as it would on real data; each cycle appends a different word sequence to the long
free-text strings of the row (strings with a space, longer than 20 characters) so that exact
dedup does not collapse the copies. Short strings, numbers, booleans and every field the task's
answer label or options are computed from are left as they are, and the id field (if the spec
names one) is replaced by a unique value.

Each sample row is serialised to JSON once with placeholders; a row is then a string join and a
replace, so writing runs at disk speed rather than at `json.dumps` speed.

It also writes OUT/sources.txt, one `--source TASK[:SPLIT]=PATH` per line, for `flanforge build`.
At --scale 1 the corpus is ~86 million rows (~16 GiB); the estimated size is checked against the free disk
space before anything is written.

    python benchmarks/synthetic_flan.py --out /tmp/flan --scale 0.01
    python benchmarks/synthetic_flan.py --out /tmp/flan --tasks sst2,rte --max-rows-per-task 100000
    flanforge build --recipe flan2021 --output /tmp/flan_out $(cat /tmp/flan/sources.txt)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from flanforge.beam_pipelines.catalog import TaskSpec, load_catalog

# Rows of each task's train split, from the datasets' published sizes (HF hub / TFDS cards).
TRAIN_ROWS: dict[str, int] = {
    "arc_challenge": 1_119,
    "arc_easy": 2_251,
    "natural_questions": 87_925,
    "trivia_qa": 138_384,
    "copa": 400,
    "hellaswag": 39_905,
    "piqa": 16_113,
    "story_cloze": 0,  # no train split: the spec reads validation and test
    "definite_pronoun_resolution": 1_322,
    "winogrande": 40_398,
    "wsc": 554,
    "cola": 8_551,
    "coqa": 7_199,
    "fix_punct": 87_599,
    "math_dataset": 1_999_998,
    "quac": 11_567,
    "trec": 5_452,
    "true_case": 87_599,
    "wic": 5_428,
    "word_segment": 87_599,
    "anli_r1": 16_946,
    "anli_r2": 45_460,
    "anli_r3": 100_459,
    "cb": 250,
    "mnli_matched": 392_702,
    "mnli_mismatched": 392_702,
    "qnli": 104_743,
    "rte": 2_490,
    "snli": 550_152,
    "wnli": 635,
    "mrpc": 3_668,
    "paws_wiki": 49_401,
    "qqp": 363_846,
    "stsb": 5_749,
    "bool_q": 9_427,
    "drop": 77_409,
    "multirc": 27_243,
    "openbookqa": 4_957,
    "squad_v1": 87_599,
    "squad_v2": 130_319,
    "cosmos_qa": 25_262,
    "record": 100_730,
    "imdb": 25_000,
    "sentiment140": 1_600_000,
    "sst2": 67_349,
    "yelp_polarity": 560_000,
    "common_gen": 67_389,
    "dart": 62_659,
    "e2e_nlg": 33_525,
    "web_nlg": 35_426,
    "aeslc": 14_436,
    "ag_news_subset": 120_000,
    "cnn_dailymail": 287_113,
    "gigaword": 3_803_957,
    "multi_news": 44_972,
    "newsroom": 995_041,
    "opinion_abstracts_idebate": 2_259,  # approx
    "opinion_abstracts_rotten_tomatoes": 3_731,  # approx
    "samsum": 14_732,
    "wiki_lingua_english_en": 99_020,  # approx
    "xsum": 204_045,
    "para_crawl_enes": 21_987_267,  # approx
    "wmt14_enfr": 40_836_715,
    "wmt16_csen": 997_240,
    "wmt16_deen": 4_548_885,
    "wmt16_fien": 2_073_394,
    "wmt16_roen": 610_320,
    "wmt16_ruen": 1_516_162,
    "wmt16_tren": 205_756,
}

# Rows of the split each spec reads as `validation` (its `source.splits`: for some tasks the
# dataset's test split). Tasks whose spec has no validation split are absent.
VALIDATION_ROWS: dict[str, int] = {
    "arc_challenge": 299,
    "arc_easy": 570,
    "natural_questions": 3_610,
    "trivia_qa": 17_944,
    "copa": 100,
    "hellaswag": 10_042,
    "piqa": 1_838,
    "story_cloze": 1_871,
    "definite_pronoun_resolution": 564,
    "winogrande": 1_267,
    "wsc": 104,
    "cola": 1_043,
    "coqa": 500,
    "fix_punct": 10_570,
    "math_dataset": 10_000,
    "quac": 1_000,
    "trec": 500,
    "true_case": 10_570,
    "wic": 638,
    "word_segment": 10_570,
    "anli_r1": 1_000,
    "anli_r2": 1_000,
    "anli_r3": 1_200,
    "cb": 56,
    "mnli_matched": 9_815,
    "mnli_mismatched": 9_832,
    "qnli": 5_463,
    "rte": 277,
    "snli": 10_000,
    "wnli": 71,
    "mrpc": 408,
    "paws_wiki": 8_000,
    "qqp": 40_430,
    "stsb": 1_500,
    "bool_q": 3_270,
    "drop": 9_536,
    "multirc": 4_848,
    "openbookqa": 500,
    "squad_v1": 10_570,
    "squad_v2": 11_873,
    "cosmos_qa": 2_985,
    "record": 10_000,
    "imdb": 25_000,
    "sentiment140": 498,
    "sst2": 872,
    "yelp_polarity": 38_000,
    "common_gen": 993,
    "dart": 2_768,  # approx
    "e2e_nlg": 1_484,  # approx
    "web_nlg": 1_667,  # approx
    "aeslc": 1_960,
    "ag_news_subset": 7_600,
    "cnn_dailymail": 13_368,
    "gigaword": 189_651,
    "multi_news": 5_622,
    "newsroom": 108_837,
    "samsum": 818,
    "wiki_lingua_english_en": 13_823,  # approx
    "xsum": 11_332,
    "wmt14_enfr": 3_000,
    "wmt16_csen": 2_656,
    "wmt16_deen": 2_169,
    "wmt16_fien": 1_370,
    "wmt16_roen": 1_999,
    "wmt16_ruen": 2_818,
    "wmt16_tren": 1_001,
}
VALIDATION_CAP = 10_000

# Cycle c of a split gets the suffix " " + the base-64 digits of c spelt with these words,
# preceded in validation rows by a word that is not in the list, so no validation row equals a
# train row.
WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lagoon", "meadow", "nectar", "orchid", "pebble", "quartz", "raven", "saffron", "thistle",
    "umber", "violet", "willow", "xenon", "yarrow", "zephyr", "acorn", "birch", "canyon", "dune",
    "estuary", "fern", "glacier", "heron", "iris", "jasper", "kelp", "lichen", "maple", "nimbus",
    "oak", "prairie", "quill", "reef", "sparrow", "tundra", "upland", "vale", "wren", "yew",
    "alder", "bramble", "cove", "drift", "elm", "flint", "grove", "hazel", "islet", "jade",
    "knoll", "larch", "moss", "nettle",
)
SPLIT_MARKERS = {"train": "", "validation": " heldout"}

SUFFIX = "@@SUFFIX@@"  # marks where a varied string ends in a serialised sample row
ROW_ID = "@@ROWID@@"  # the id field's value in a serialised sample row
CHUNK_CYCLES = 4096  # cycles of sample rows joined into one write


def suffix_of(counter: int) -> str:
    digits = []
    while True:
        counter, d = divmod(counter, len(WORDS))
        digits.append(WORDS[d])
        if counter == 0:
            return " " + " ".join(reversed(digits))


def referenced_variables(expression: str, env: jinja2.Environment) -> set[str]:
    return set(meta.find_undeclared_variables(env.parse("{{ " + expression + " }}")))


def protected_keys(spec: TaskSpec) -> set[str]:
    """Top-level source keys that the answer label or the options are computed from."""
    if spec.answers is None:
        return set()
    env = jinja2.Environment()
    expressions = [spec.answers.label] + ([spec.answers.options] if isinstance(spec.answers.options, str) else [])
    names: set[str] = set()
    pending = set().union(*(referenced_variables(e, env) for e in expressions))
    while pending:
        name = pending.pop()
        if name in names:
            continue
        names.add(name)
        if name in spec.derived:
            pending |= referenced_variables(spec.derived[name], env)
    if spec.fields is None:
        return names
    return {spec.fields[n].split(".")[0] for n in names if n in spec.fields}


def plain(value: Any) -> Any:
    """Spec rows are immutable mappings and tuples; JSON wants dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def mark_free_text(value: Any) -> tuple[Any, int]:
    """The value with SUFFIX appended to every long free-text string in it, and how many."""
    if isinstance(value, str):
        return (value + SUFFIX, 1) if " " in value and len(value) > 20 else (value, 0)
    if isinstance(value, dict):
        items = {k: mark_free_text(v) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, sum(n for _, n in items.values())
    if isinstance(value, list):
        items = [mark_free_text(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    return value, 0


@dataclass(frozen=True)
class RowTemplate:
    parts: tuple[str, ...]  # the serialised row split at SUFFIX: a row is suffix.join(parts)
    id_kind: str  # "" (no id field), "int" or "str": how the row's id replaces '"@@ROWID@@"'


def row_templates(spec: TaskSpec) -> tuple[list[RowTemplate], int]:
    """One serialised template per sample row, and how many strings per cycle are varied."""
    protected = protected_keys(spec)
    templates, varied = [], 0
    for sample in spec.samples:
        row = plain(sample)
        original = json.dumps(row, ensure_ascii=False)
        if SUFFIX in original or ROW_ID in original:
            raise ValueError(f"{spec.name}: a sample row already contains a placeholder")
        id_kind = ""
        for key, value in row.items():
            if key == spec.source.id_field:
                row[key] = ROW_ID
                id_kind = "int" if isinstance(value, int) else "str"
            elif key not in protected:
                row[key], n = mark_free_text(value)
                varied += n
        templates.append(RowTemplate(tuple(json.dumps(row, ensure_ascii=False).split(SUFFIX)), id_kind))
    return templates, varied


def write_split(path: Path, templates: list[RowTemplate], rows: int, marker: str, id_prefix: str) -> int:
    """Write `rows` rows cycling through the templates; return the bytes written."""
    k = len(templates)
    cycles = -(-rows // k)
    token = f'"{ROW_ID}"'
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for first in range(0, cycles, CHUNK_CYCLES):
            lines: list[str] = []
            for cycle in range(first, min(first + CHUNK_CYCLES, cycles)):
                suffix = marker + suffix_of(cycle)
                base = cycle * k
                for j, t in enumerate(templates[: rows - base]):
                    line = suffix.join(t.parts)
                    if t.id_kind == "int":
                        line = line.replace(token, str(base + j))
                    elif t.id_kind == "str":
                        line = line.replace(token, f'"{id_prefix}{base + j}"')
                    lines.append(line)
            f.write("\n".join(lines) + "\n")
    return path.stat().st_size


def estimated_bytes(templates: list[RowTemplate], rows: int, marker: str) -> int:
    """The size write_split will produce, to within the length of the ids."""
    per_cycle = sum(sum(len(p.encode()) for p in t.parts) + 1 + 10 * bool(t.id_kind) for t in templates)
    varied = sum(len(t.parts) - 1 for t in templates)
    return -(-rows // len(templates)) * (per_cycle + varied * len(marker + suffix_of(rows)))


def split_sizes(task: str, spec: TaskSpec, scale: float, max_rows: int | None) -> dict[str, int]:
    real = {"train": TRAIN_ROWS[task], "validation": min(VALIDATION_ROWS.get(task, 0), VALIDATION_CAP)}
    sizes = {}
    for split, n in real.items():
        if split in spec.source.splits and n > 0:
            rows = max(1, round(n * scale))
            sizes[split] = min(rows, max_rows) if max_rows else rows
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output directory (OUT/<task>/{train,validation}.jsonl, OUT/sources.txt)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every split size by this (default 1.0: ~86M rows)")
    parser.add_argument("--max-rows-per-task", type=int, help="cap every split of every task at this many rows")
    parser.add_argument("--tasks", help="comma-separated task names (default: the whole catalog)")
    args = parser.parse_args()

    catalog = load_catalog()
    missing = sorted(
        {t for t in catalog.tasks if t not in TRAIN_ROWS}
        | {t for t, spec in catalog.tasks.items() if "validation" in spec.source.splits and t not in VALIDATION_ROWS}
    )
    if missing:
        sys.exit(f"no TRAIN_ROWS or VALIDATION_ROWS entry for {', '.join(missing)}: add the real split sizes")
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else sorted(catalog.tasks)
    unknown = [t for t in tasks if t not in catalog.tasks]
    if unknown:
        sys.exit(f"unknown task(s): {', '.join(unknown)}")

    plans = []
    estimate = 0
    for task in tasks:
        spec = catalog.tasks[task]
        templates, varied = row_templates(spec)
        if varied == 0:
            print(f"warning: {task} has no free-text field to vary; its rows repeat every {len(templates)} rows", file=sys.stderr)
        sizes = split_sizes(task, spec, args.scale, args.max_rows_per_task)
        estimate += sum(estimated_bytes(templates, rows, SPLIT_MARKERS[split]) for split, rows in sizes.items())
        plans.append((task, templates, sizes))
    args.out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.out).free
    print(f"{sum(sum(s.values()) for _, _, s in plans):,} rows over {len(plans)} tasks, ~{estimate / 2**30:.2f} GiB; {free / 2**30:.1f} GiB free")
    if estimate > free - (1 << 30):
        sys.exit("not enough disk space (keeping 1 GiB free): lower --scale, or use --max-rows-per-task or --tasks")

    sources: list[str] = []
    total_rows = total_bytes = 0
    start = time.perf_counter()
    for task, templates, sizes in plans:
        (args.out / task).mkdir(exist_ok=True)
        for split, rows in sizes.items():
            path = (args.out / task / f"{split}.jsonl").resolve()
            total_bytes += write_split(path, templates, rows, SPLIT_MARKERS[split], f"{split}-")
            total_rows += rows
            sources.append(f"--source {task}={path}" if split == "train" else f"--source {task}:{split}={path}")
    seconds = time.perf_counter() - start
    (args.out / "sources.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    print(
        f"wrote {total_rows:,} rows, {total_bytes:,} bytes ({total_bytes / 2**30:.2f} GiB) in {seconds:.1f}s "
        f"= {total_rows / max(seconds, 1e-9):,.0f} rows/s; sources in {args.out / 'sources.txt'}"
    )


if __name__ == "__main__":
    main()
