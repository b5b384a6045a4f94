"""Data-plane figures of `flanforge build`, measured side by side in one run.

  1 speed     SST-2 (real train + validation), train capped at 30,000 records: `flanforge build`
              with 1 process and with 2 workers (multi_processing) against plain_script.py, the
              same job written with datasets + jinja2 + pandas. Whole-process wall time on both
              sides; rows/s = rendered rows (rows that pass the filter x templates, as counted by
              the plain script) / wall seconds; ratio = the faster build's rows/s / the script's.
  2 memory    uncapped builds of SST-2 train x1 and x3 (the rows repeated with varied text, so
              dedup keeps the copies), 1 process: wall time and peak RSS of each, and x3/x1. A
              data plane that streams should keep peak RSS nearly flat while the corpus triples.
  3 capped    the same two corpora with --max-examples-per-task 30000: wall time x3/x1. The
              output is the same size; what grows is reading, rendering and choosing the sample.
  4 FLAN      (only with --flan-scale F > 0; long) synthetic_flan.py writes every catalog task at
              F x its real size, then `build --recipe flan2021`: wall time, rows read/s, peak RSS.
  5 workers   an uncapped build of >= 5M rendered rows (SST-2 train x --workers-copies, varied,
              as many JSONL files so the read splits into many shards) with 1 process and with 2
              workers: times, speed-up, and whether every shard's sha256 in the two manifests is
              identical (the output must not depend on the worker count).

Timings on a shared machine vary by tens of percent from one minute to the next, so the runs that
are compared (figures 1-3) are repeated --repeat times, interleaved (A, B, A, B, ...), and each
reports its fastest run (and the largest peak RSS of its runs).

Every build and the plain script run in a fresh wrapper process that starts them as its own child
and reports resource.getrusage(RUSAGE_CHILDREN).ru_maxrss, so each peak RSS belongs to that run
alone (with 2 workers it is the largest single process of the run, not the sum). A warm-up build
and a warm-up script run come first, so no measured run pays for .pyc files and cold OS caches.

Prints a table, and writes the results as JSON (--json) and a chart of rows/s and peak RSS
against corpus size (--chart; needs matplotlib, which is imported only to draw it).

    python benchmarks/data_plane.py                      # figures 1, 2, 3, 5
    python benchmarks/data_plane.py --only 2,3 --json out.json
    python benchmarks/data_plane.py --only 4 --flan-scale 0.01
    python benchmarks/data_plane.py --only 1,2,3 --before /tmp/before   # also a checkout of an earlier commit

With --before CHECKOUT, figures 1-3 also build with that checkout's code (its package folders put
first on PYTHONPATH, the same Python environment otherwise), interleaved with the current code's
runs, so a change is measured before and after in one run on one machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_REALDATA = HERE.parent.parent / "shared" / "realdata"
DEFAULT_CHART = HERE / "data_plane.png"
CAP = 30_000
WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
JSONL_ROWS_PER_FILE = 25_000  # figure 5's input files: ~2 MB each, one read shard per file

# The wrapper every measured run goes through: it starts the command as its child, so its own
# RUSAGE_CHILDREN peak RSS is the command's largest process (RUSAGE_CHILDREN only grows, hence a
# fresh wrapper). It also samples /proc twice a second for the summed RSS of the whole process
# tree, which is what a multi-process build really holds.
MEASURE = r"""
import json, os, resource, subprocess, sys, time
result, log, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

def tree_rss_kb(root):
    parents, rss = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            parents[int(pid)] = int(fields["PPid"])
            rss[int(pid)] = int(fields.get("VmRSS", "0 kB").split()[0])
        except (OSError, KeyError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [c for c, p in parents.items() if p == pid]
    return total

start = time.perf_counter()
tree_peak = 0
with open(log, "wb") as out:
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    while proc.poll() is None:
        tree_peak = max(tree_peak, tree_rss_kb(proc.pid))
        time.sleep(0.5)
wall = time.perf_counter() - start
with open(result, "w") as f:
    json.dump({"rc": proc.returncode, "wall_s": wall, "peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
               "tree_peak_rss_kb": tree_peak}, f)
"""


@dataclass(frozen=True)
class Run:
    """One measured process: what it was, how long it ran, its peak RSS, and what it did."""

    label: str
    corpus_rows: int | None  # source rows read (None: the plain script, which does not count them)
    rendered: int  # template applications
    written: int
    wall_s: float
    peak_rss_mb: float  # the largest single process
    tree_rss_mb: float = 0.0  # all processes of the run together (sampled twice a second)

    @property
    def rows_per_s(self) -> float:
        return self.rendered / self.wall_s


def show(run: Run) -> None:
    print(f"  {run.label:<34} {run.wall_s:8.1f} s {run.rows_per_s:>11,.0f} rows/s  peak RSS {run.peak_rss_mb:>7,.0f} MB "
          f"(all processes {run.tree_rss_mb:,.0f} MB)  written {run.written:,}", flush=True)


def measure(argv: Sequence[object], work: Path, name: str, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Run argv in a fresh wrapper (with `env`, else this environment); (wall seconds, peak RSS of
    its largest process, peak RSS of its process tree), in MB. Raises if it fails."""
    result, log = work / f"{name}.result.json", work / f"{name}.log"
    subprocess.run([sys.executable, "-c", MEASURE, str(result), str(log), *map(str, argv)], check=True, env=env)
    outcome = json.loads(result.read_text())
    if outcome["rc"] != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{name}: {shlex.join(map(str, argv[:6]))} ... exited with {outcome['rc']}:\n{tail}")
    return outcome["wall_s"], outcome["peak_rss_kb"] / 1024, outcome["tree_peak_rss_kb"] / 1024


def best(runs: Sequence[Run]) -> Run:
    """The fastest of repeated runs, with the largest peak RSS any of them reached."""
    fastest = min(runs, key=lambda r: r.wall_s)
    return Run(f"{fastest.label} (best of {len(runs)})", fastest.corpus_rows, fastest.rendered, fastest.written,
               fastest.wall_s, max(r.peak_rss_mb for r in runs), max(r.tree_rss_mb for r in runs))


def interleaved(repeat: int, *measured: Callable[[int], Run]) -> list[Run]:
    """Run each measurement `repeat` times in turn (A, B, A, B, ...); the best run of each."""
    runs: list[list[Run]] = [[] for _ in measured]
    for i in range(repeat):
        for collected, measure_once in zip(runs, measured):
            collected.append(measure_once(i))
    return [best(r) for r in runs]


PACKAGE_FOLDERS = ("beam_pipelines", "schemas", "training", "templates")


def before_env(checkout: Path, work: Path) -> dict[str, str]:
    """An environment whose `flanforge` is an earlier checkout: its package folders linked into a
    `flanforge/` namespace folder first on PYTHONPATH (ahead of the editable install's finder)."""
    package = work / "before_package" / "flanforge"
    package.mkdir(parents=True, exist_ok=True)
    for folder in PACKAGE_FOLDERS:
        (package / folder).symlink_to(checkout.resolve() / folder)
    return {**os.environ, "PYTHONPATH": str(package.parent)}


def build(
    label: str, sources: Sequence[str], work: Path, name: str, extra: Sequence[str] = (), env: dict[str, str] | None = None
) -> tuple[Run, list[tuple[str, str]]]:
    """One `flanforge build --no-incremental`; returns its Run and its shards' (path, sha256).

    The output is deleted once its manifest is read (figure 5's outputs are gigabytes).
    """
    out = work / name
    argv = [
        sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--output", out,
        "--no-incremental", "--no-progress", "--formats", "tfrecord,parquet", *sources, *extra,
    ]
    wall, peak, tree = measure(argv, work, name, env)
    manifest = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(out)
    totals = manifest["totals"]
    run = Run(label, totals["read"], totals["template_applications"], totals["written"], wall, peak, tree)
    show(run)
    return run, sorted((s["path"], s["sha256"]) for s in manifest["shards"])


def plain_script(label: str, train: Path, validation: Path, work: Path, name: str) -> Run:
    summary = work / f"{name}.summary.json"
    argv = [
        sys.executable, HERE / "plain_script.py", "--train", train, "--validation", validation,
        "--output", work / name, "--max-train", CAP, "--summary-json", summary,
    ]
    wall, peak, tree = measure(argv, work, name)
    result = json.loads(summary.read_text())
    shutil.rmtree(work / name)
    run = Run(label, None, result["rendered"], sum(result["written"].values()), wall, peak, tree)
    show(run)
    return run


def read_sst2(path: Path, limit: int | None) -> list[tuple[str, str]]:
    """(sentence, label) pairs of an SST-2 TSV, header skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [(sentence, label) for sentence, label in (line.split("\t") for line in lines[:limit])]


def varied(sentence: str, copy: int) -> str:
    """Copy 0 is the sentence itself; later copies end differently, so dedup keeps them apart."""
    return sentence if copy == 0 else f"{sentence.rstrip()} ( take {copy + 1} ) "


def write_tsv(rows: list[tuple[str, str]], copies: int, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for c in range(copies):
            f.writelines(f"{varied(s, c)}\t{label}\n" for s, label in rows)


def write_jsonl_files(rows: list[tuple[str, str]], copies: int, folder: Path) -> int:
    """The replicated rows as JSONL files of JSONL_ROWS_PER_FILE rows; returns the file count."""
    folder.mkdir()
    lines = [
        json.dumps({"idx": c * len(rows) + i, "sentence": varied(s, c), "label": int(label)})
        for c in range(copies)
        for i, (s, label) in enumerate(rows)
    ]
    starts = range(0, len(lines), JSONL_ROWS_PER_FILE)
    for n, first in enumerate(starts):
        (folder / f"part-{n:05d}.jsonl").write_text("\n".join(lines[first : first + JSONL_ROWS_PER_FILE]) + "\n", encoding="utf-8")
    return len(starts)


def sst2_job(realdata: Path) -> tuple[Path, Path, list[str]]:
    """Figure 1's job: SST-2 train and validation, and the --source flags that name them."""
    train, validation = realdata / "sst2" / "train.tsv", realdata / "sst2" / "validation.tsv"
    return train, validation, ["--source", f"sst2={train}", "--source", f"sst2:validation={validation}"]


def figure_speed(realdata: Path, work: Path, repeat: int, before: dict[str, str] | None = None) -> dict[str, Any]:
    train, validation, sources = sst2_job(realdata)
    cap = ["--max-examples-per-task", str(CAP)]
    measured = [
        lambda i: plain_script("plain script", train, validation, work, f"speed_script_{i}"),
        lambda i: build("flanforge, 1 process", sources, work, f"speed_1_{i}", cap)[0],
        lambda i: build("flanforge, 2 workers", sources, work, f"speed_2_{i}", cap + WORKERS)[0],
    ]
    if before is not None:
        measured.append(lambda i: build("before: flanforge, 1 process", sources, work, f"speed_before_{i}", cap, before)[0])
    script, one, two, *earlier = interleaved(repeat, *measured)
    faster = min(one, two, key=lambda r: r.wall_s)
    # rows/s on both sides counts the script's rendered rows: the work of the uncapped job.
    runs = (script, one, two, *earlier)
    rate = {r.label: script.rendered / r.wall_s for r in runs}
    result = {
        "runs": [asdict(r) | {"rows_per_s": rate[r.label]} for r in runs],
        "rendered_rows": script.rendered,
        "faster_build": faster.label,
        "ratio_flanforge_to_script": rate[faster.label] / rate[script.label],
    }
    if earlier:
        result["before_ratio_to_script"] = rate[earlier[0].label] / rate[script.label]
    return result


def figure_scaling(
    rows: list[tuple[str, str]], copies: int, work: Path, capped: bool, repeat: int, before: dict[str, str] | None = None
) -> dict[str, Any]:
    extra = ["--max-examples-per-task", str(CAP)] if capped else []
    kind = "capped" if capped else "uncapped"
    for n in (1, copies):
        path = work / f"sst2_x{n}.tsv"
        if not path.exists():
            write_tsv(rows, n, path)

    def one_build(n: int, env: dict[str, str] | None = None) -> Callable[[int], Run]:
        path = work / f"sst2_x{n}.tsv"
        label, name = ("before: ", "before_") if env is not None else ("", "")
        return lambda i: build(f"{label}SST-2 x{n}, {kind}, 1 process", ["--source", f"sst2={path}"], work, f"{name}{kind}_x{n}_{i}", extra, env)[0]

    measured = [one_build(1), one_build(copies)] + ([one_build(1, before), one_build(copies, before)] if before is not None else [])
    runs = interleaved(repeat, *measured)
    small, large = runs[:2]
    result = {
        "runs": [asdict(r) | {"rows_per_s": r.rows_per_s} for r in runs],
        "copies": copies,
        "wall_ratio": large.wall_s / small.wall_s,
        "peak_rss_ratio": large.peak_rss_mb / small.peak_rss_mb,
    }
    if before is not None:
        small_before, large_before = runs[2:]
        result["before_wall_ratio"] = large_before.wall_s / small_before.wall_s
        result["before_peak_rss_ratio"] = large_before.peak_rss_mb / small_before.peak_rss_mb
    return result


def figure_flan(scale: float, work: Path, corpus: Path | None) -> dict[str, Any]:
    """The flan2021 recipe over a synthetic corpus: generated here at `scale`, or an existing one."""
    if corpus is None:
        corpus = work / "flan_corpus"
        subprocess.run([sys.executable, HERE / "synthetic_flan.py", "--out", corpus, "--scale", str(scale)], check=True)
    sources = [arg for line in (corpus / "sources.txt").read_text().splitlines() for arg in shlex.split(line)]
    run, _ = build(f"FLAN 2021 recipe, scale {scale:g}, 2 workers", sources, work, "flan", ["--recipe", "flan2021", *WORKERS])
    if corpus.parent == work:
        shutil.rmtree(corpus)
    return {"runs": [asdict(run) | {"rows_per_s": run.rows_per_s}], "scale": scale, "read_rows_per_s": run.corpus_rows / run.wall_s}


def figure_workers(rows: list[tuple[str, str]], copies: int, work: Path) -> dict[str, Any]:
    folder = work / "workers_corpus"
    files = write_jsonl_files(rows, copies, folder)
    sources = ["--source", f"sst2={folder}/*.jsonl"]
    one, shards_one = build(f"SST-2 x{copies} JSONL, 1 process", sources, work, "workers_1")
    two, shards_two = build(f"SST-2 x{copies} JSONL, 2 workers", sources, work, "workers_2", WORKERS)
    shutil.rmtree(folder)
    return {
        "runs": [asdict(r) | {"rows_per_s": r.rows_per_s} for r in (one, two)],
        "copies": copies,
        "input_files": files,
        "speedup": one.wall_s / two.wall_s,
        "shards": len(shards_one),
        "identical_shards": shards_one == shards_two,
    }


def warm_up(realdata: Path, work: Path, with_script: bool) -> None:
    """One small build (and script run): the first run in a fresh environment pays for .pyc files."""
    measure([sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--demo", "--tasks", "sst2", "--output", work / "warm"], work, "warm")
    if with_script:
        validation = realdata / "sst2" / "validation.tsv"
        plain_script("warm-up (plain script)", validation, validation, work, "warm_script")


def print_table(figures: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'fig':<4}{'run':<48}{'rows read':>12}{'rendered':>12}{'wall s':>9}{'rows/s':>12}{'peak MB':>9}{'all MB':>9}")
    for fig, result in figures.items():
        for r in result["runs"]:
            read = "-" if r["corpus_rows"] is None else f"{r['corpus_rows']:,}"
            print(f"{fig:<4}{r['label']:<48}{read:>12}{r['rendered']:>12,}{r['wall_s']:>9.1f}{r['rows_per_s']:>12,.0f}"
                  f"{r['peak_rss_mb']:>9,.0f}{r['tree_rss_mb']:>9,.0f}")
    print()
    if "1" in figures:
        f = figures["1"]
        print(f"1 speed:   {f['faster_build']} = {f['ratio_flanforge_to_script']:.2f}x the plain script's rows/s "
              f"({f['rendered_rows']:,} rendered rows)")
        if "before_ratio_to_script" in f:
            print(f"           before: flanforge, 1 process = {f['before_ratio_to_script']:.2f}x the plain script's rows/s")
    if "2" in figures:
        f = figures["2"]
        print(f"2 memory:  x{f['copies']}/x1 uncapped: peak RSS {f['peak_rss_ratio']:.2f}x, wall {f['wall_ratio']:.2f}x")
        if "before_peak_rss_ratio" in f:
            print(f"           before: peak RSS {f['before_peak_rss_ratio']:.2f}x, wall {f['before_wall_ratio']:.2f}x")
    if "3" in figures:
        f = figures["3"]
        print(f"3 capped:  x{f['copies']}/x1 capped at {CAP:,}: wall {f['wall_ratio']:.2f}x, peak RSS {f['peak_rss_ratio']:.2f}x")
        if "before_wall_ratio" in f:
            print(f"           before: wall {f['before_wall_ratio']:.2f}x, peak RSS {f['before_peak_rss_ratio']:.2f}x")
    if "4" in figures:
        f = figures["4"]
        print(f"4 FLAN:    scale {f['scale']:g}: {f['read_rows_per_s']:,.0f} rows read/s")
    if "5" in figures:
        f = figures["5"]
        print(f"5 workers: 2 workers {f['speedup']:.2f}x faster over {f['input_files']} input files; "
              f"{f['shards']} output shards, sha256 {'identical' if f['identical_shards'] else 'DIFFERENT'}")


def draw_chart(figures: dict[str, dict[str, Any]], path: Path) -> None:
    """Template applications per second and peak RSS against source rows read, for every build
    measured (figures 2-5): whether cost and memory follow what is read, written, or neither."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("2", "SST-2 x1, x3 uncapped, 1 process", "o-", False),
        ("3", f"SST-2 x1, x3 capped at {CAP:,}, 1 process", "s--", False),
        ("5", "SST-2 x8 uncapped: 1 process, 2 workers", "^:", False),
        ("4", "FLAN 2021 recipe (synthetic, real sizes), 2 workers", "D", True),
    ]
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(12, 4.6))
    for key, name, style, whole_tree in series:
        if key not in figures:
            continue
        runs = [r for r in figures[key]["runs"] if not r["label"].startswith("before: ")]
        x = [r["corpus_rows"] for r in runs]
        speed.plot(x, [r["rows_per_s"] for r in runs], style, label=name)
        memory.plot(x, [r["peak_rss_mb"] for r in runs], style, label=name)
        if whole_tree:
            memory.plot(x, [r["tree_rss_mb"] for r in runs], "d", mfc="none", label=name.split(" (")[0] + ": all processes")
    for ax, ylabel in ((speed, "template applications / s"), (memory, "peak RSS of the largest process (MB)")):
        ax.set_xscale("log")
        ax.set_xlabel("source rows read")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    speed.legend(fontsize=8)
    memory.legend(fontsize=8)
    speed.set_title("throughput")
    memory.set_title("memory")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"chart: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA, help="holds sst2/train.tsv and sst2/validation.tsv")
    parser.add_argument("--only", default="1,2,3,4,5", help="comma-separated figures to measure (4 also needs --flan-scale)")
    parser.add_argument("--repeat", type=int, default=3, help="figures 1-3: runs of each configuration, interleaved; the best counts (default 3)")
    parser.add_argument("--copies", type=int, default=3, help="figures 2 and 3: the larger corpus, in copies of SST-2 train (default 3)")
    parser.add_argument("--workers-copies", type=int, default=8, help="figure 5: copies of SST-2 train (default 8: 5.4M rendered rows)")
    parser.add_argument("--base-rows", type=int, help="figures 2, 3, 5: use only the first N rows of SST-2 train (a quick check)")
    parser.add_argument("--flan-scale", type=float, default=0.0, help="figure 4: corpus scale for synthetic_flan.py (default 0: skip)")
    parser.add_argument("--flan-corpus", type=Path, help="figure 4: an existing synthetic_flan.py output to build (its --scale goes in --flan-scale)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--before", type=Path, help="figures 1-3: also build with this checkout of an earlier commit, interleaved")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help=f"PNG chart of figures 2-5 (default {DEFAULT_CHART})")
    parser.add_argument("--redraw", type=Path, help="only draw the chart again from a results JSON written by --json")
    args = parser.parse_args()
    if args.redraw:
        draw_chart(json.loads(args.redraw.read_text())["figures"], args.chart)
        return
    only = {f.strip() for f in args.only.split(",") if f.strip()}
    unknown = only - set("12345")
    if unknown:
        parser.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}")
    if "4" in only and args.flan_scale <= 0:
        only.discard("4")
        print("figure 4 skipped: give --flan-scale F > 0 to run it")

    rows = read_sst2(args.realdata / "sst2" / "train.tsv", args.base_rows)
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="data_plane_") as tmp:
        work = Path(tmp)
        before = before_env(args.before, work) if args.before else None
        warm_up(args.realdata, work, with_script="1" in only)
        if before is not None:
            measure([sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--demo", "--tasks", "sst2", "--output", work / "warm_before"], work, "warm_before", before)
        if "1" in only:
            print("1 speed vs the plain script (SST-2 train + validation, train capped at 30,000)")
            figures["1"] = figure_speed(args.realdata, work, args.repeat, before)
        if "2" in only:
            print(f"2 memory: SST-2 train x1 and x{args.copies}, uncapped")
            figures["2"] = figure_scaling(rows, args.copies, work, capped=False, repeat=args.repeat, before=before)
        if "3" in only:
            print(f"3 capped cost: SST-2 train x1 and x{args.copies}, capped at {CAP:,}")
            figures["3"] = figure_scaling(rows, args.copies, work, capped=True, repeat=args.repeat, before=before)
        if "4" in only:
            print(f"4 FLAN scale {args.flan_scale:g}")
            figures["4"] = figure_flan(args.flan_scale, work, args.flan_corpus)
        if "5" in only:
            print(f"5 workers: SST-2 train x{args.workers_copies}, uncapped")
            figures["5"] = figure_workers(rows, args.workers_copies, work)

    print_table(figures)
    if args.json:
        machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
        args.json.write_text(json.dumps({"machine": machine, "figures": figures}, indent=2) + "\n", encoding="utf-8")
        print(f"results: {args.json}")
    if {"2", "3", "4", "5"} & figures.keys():
        draw_chart(figures, args.chart)


if __name__ == "__main__":
    main()
