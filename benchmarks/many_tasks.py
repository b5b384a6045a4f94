"""Build cost against the number of tasks, the rows held fixed.

Flan 2022 has ~1,600 Super-NaturalInstructions tasks, one per task file; what the launcher and the
pipeline do once per task (planning, fingerprints, counters, manifest entries) must stay small next
to rendering. This builds the same number of synthetic NIv2 instances cut into 100, 1,000 and 2,000
task files and prints each build's wall time and peak RSS; with --before CHECKOUT an earlier
checkout builds the same files in turn.

    python benchmarks/many_tasks.py --before /tmp/before
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data_plane import before_env, measure  # noqa: E402  (one way to time a build and run an earlier checkout)
from train_input import write_task_files  # noqa: E402


def build(files: Path, work: Path, name: str, env: dict[str, str] | None) -> tuple[float, float]:
    out = work / name
    argv = [
        sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--output", out, "--tasks", "niv2",
        "--source", f"niv2={files}/*.json", "--formats", "parquet", "--few-shot", "0", "--no-progress", "--no-incremental",
    ]
    wall, peak, _ = measure(argv, work, name, env)
    shutil.rmtree(out)
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=40_000, help="NIv2 instances in all, cut into the task files")
    parser.add_argument("--tasks", default="100,1000,2000", help="task counts to build")
    parser.add_argument("--before", type=Path, help="also build with this checkout of an earlier commit")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="flanforge-many-tasks-") as tmp:
        work = Path(tmp)
        versions = [("this checkout", None)] + ([("before", before_env(args.before, work))] if args.before else [])
        for tasks in (int(t) for t in args.tasks.split(",")):
            files = work / f"tasks_{tasks}"
            write_task_files(files, tasks, args.instances // tasks, seed=0)
            for label, env in versions:
                wall, peak = build(files, work, f"{label.split()[0]}_{tasks}", env)
                results.append({"tasks": tasks, "version": label, "wall_s": round(wall, 1), "peak_rss_mb": round(peak)})
                print(f"  {tasks:>5} tasks x {args.instances // tasks:>4} instances  {label:<14} {wall:6.1f} s  peak RSS {peak:5.0f} MB", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"instances": args.instances, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
