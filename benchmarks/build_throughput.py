"""End-to-end build throughput against a render-only loop over the same rows, in one run.

Builds a corpus of real-shaped rows (BoolQ, RTE, CB from ../shared/realdata, replicated with
varied ids and a varied phrase so they are not all duplicates), then measures:

  render-only   a plain single-process loop: prepare + render every template + record + hash
  beam 1 worker `flanforge build` with the in-process DirectRunner (writes the render cache)
  no cache      the same with --no-incremental: what keeping the render cache costs
  rebuild       the first build run again into its output, nothing changed: every task replayed
                from the cache (incremental rebuild), dedup/balance/write redone
  beam 2 workers the first with --direct_running_mode=multi_processing --direct_num_workers=2

and prints rows/s (rendered rows = template applications), the ratio to render-only, and the peak
RSS of each build (the build runs as a child process, so RUSAGE_CHILDREN isolates it).

    python benchmarks/build_throughput.py [--rows-target 1000000] [--realdata ../shared/realdata]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.render import Application, CompiledTask, render_row

HERE = Path(__file__).resolve().parent
DEFAULT_REALDATA = HERE.parent.parent / "shared" / "realdata"
VARIANTS = ["", " Indeed.", " Reportedly.", " As noted.", " Again.", " In short.", " So it seems.", " By all accounts."]


# realdata keeps FewGLUE's string labels; the hub (and our specs) use these ints.
HUB_LABELS = {"entailment": 0, "not_entailment": 1, "contradiction": 1, "neutral": 2}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_superglue(path: Path) -> list[dict]:
    return [dict(r, label=HUB_LABELS[r["label"]]) for r in read_jsonl(path)]


def read_boolq(path: Path) -> list[dict]:
    """FewGLUE's BoolQ -> the google/boolq hub layout (question, passage, answer)."""
    return [{"question": r["question"], "passage": r["passage"], "answer": r["label"], "idx": r["idx"]} for r in read_jsonl(path)]


def make_inputs(realdata: Path, rows_target: int, work: Path, templates: dict[str, int]) -> dict[str, tuple[Path, list[dict]]]:
    """Write one JSONL per task, replicated until sum(rows x templates) reaches rows_target."""
    base = {
        "bool_q": (read_boolq(realdata / "superglue_BoolQ" / "val.jsonl"), "passage"),
        "rte": (read_superglue(realdata / "superglue_RTE" / "val.jsonl"), "premise"),
        "cb": (read_superglue(realdata / "superglue_CB" / "val.jsonl"), "premise"),
    }
    per_copy = sum(len(rows) * templates[t] for t, (rows, _) in base.items())
    copies = max(1, -(-rows_target // per_copy))
    out = {}
    for task, (rows, text_field) in base.items():
        replicated = []
        for c in range(copies):
            for i, r in enumerate(rows):
                row = dict(r, idx=c * len(rows) + i)
                row[text_field] = row[text_field] + VARIANTS[c % len(VARIANTS)] + (f" ({c // len(VARIANTS)})" if c >= len(VARIANTS) else "")
                replicated.append(row)
        path = work / f"{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in replicated), encoding="utf-8")
        out[task] = (path, replicated)
    return out


def render_only(inputs: dict[str, tuple[Path, list[dict]]], catalog) -> tuple[int, float]:
    n = 0
    start = time.perf_counter()
    for task, (_, rows) in inputs.items():
        compiled = CompiledTask(catalog.tasks[task])
        applications = [Application(i) for i in range(compiled.n_templates)]
        for i, row in enumerate(rows):
            n += len(render_row(compiled, row, split="train", example_id=str(i), applications=applications).records)
    return n, time.perf_counter() - start


def beam_build(inputs: dict, out: Path, extra: list[str]) -> tuple[int, float, float]:
    argv = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--output", str(out), "--formats", "tfrecord,parquet"]
    for task, (path, _) in inputs.items():
        argv += ["--source", f"{task}={path}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv + extra, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["totals"]["template_applications"], elapsed, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-target", type=int, default=1_000_000, help="rendered rows to build (default 1M)")
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    args = parser.parse_args()
    catalog = load_catalog()
    templates = {t: len(catalog.tasks[t].templates) for t in ("bool_q", "rte", "cb")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = make_inputs(args.realdata, args.rows_target, work, templates)
        print(f"rows read: {sum(len(r) for _, r in inputs.values()):,} over tasks {', '.join(inputs)}")
        n, secs = render_only(inputs, catalog)
        ceiling = n / secs
        print(f"{'render-only loop':<26}: {n:>10,} rows in {secs:7.1f}s = {ceiling:>9,.0f} rows/s")
        # Warm-up: the first build in a fresh environment also pays for .pyc files and OS caches
        # (measured: ~25 s extra at this size), which would be charged to whichever build came first.
        subprocess.run(
            [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--demo", "--tasks", "rte", "--output", str(work / "warm")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for label, out, extra in (
            ("beam, 1 worker", "one", []),
            ("beam, 1 worker, no cache", "no_cache", ["--no-incremental"]),
            ("rebuild, unchanged", "one", []),
            ("beam, 2 workers", "two", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
        ):
            rows, secs, peak = beam_build(inputs, work / out, extra)
            rate = rows / secs
            print(f"{label:<26}: {rows:>10,} rows in {secs:7.1f}s = {rate:>9,.0f} rows/s = {rate / ceiling:.2f}x render-only, peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
