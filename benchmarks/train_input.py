"""The trainer's input side on a cluster of many tasks: shard reads, seconds and memory.

Flan 2022 mixes ~1,600 Super-NaturalInstructions tasks, one per task file, all in one cluster.
Records are routed to shards by content hash, so every task has rows in every shard of its
cluster, and how the trainer's task streams share (or fail to share) their shard reads decides
whether feeding a run costs one pass over the cluster or one pass per task.

This script writes synthetic NIv2 task files (seeded), builds them with `flanforge build --tasks
niv2 --source niv2=DIR/*.json` into small shards, then draws examples through the trainer's
`build_mixture` at the manifest's rates and prints: shard reads (and reads per shard), seconds,
and the drawing process's peak RSS. With --before CHECKOUT the same draw also runs on an earlier
checkout's trainer (same corpus, same seed), in turn with this one, so the two are compared in one
run on one machine.

    python benchmarks/train_input.py                      # 300 tasks x 60 instances, 4 MB shards, 20,000 examples
    python benchmarks/train_input.py --before /tmp/before --repeat 2
    python benchmarks/train_input.py --seqio --before /tmp/before     # in an environment with seqio (docs/SEQIO.md)
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data_plane import before_env  # noqa: E402  (the benchmarks share one way to run an earlier checkout)

WORDS = "river stone cloud lamp orange quiet seven market winter garden paper silver yellow ocean pencil bridge".split()


def write_task_files(folder: Path, tasks: int, instances: int, seed: int) -> None:
    """`tasks` NIv2 task files with `instances` short instances each, distinct by construction."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for t in range(tasks):
        definition = f"Task {t}: " + " ".join(rng.choice(WORDS) for _ in range(30))
        rows = [
            {"id": f"task{t}-{i}", "input": f"{t}/{i} " + " ".join(rng.choice(WORDS) for _ in range(40)), "output": [" ".join(rng.choice(WORDS) for _ in range(3))]}
            for i in range(instances)
        ]
        task = {
            "Contributors": ["benchmark"], "Source": ["synthetic"], "URL": [], "Categories": ["Misc."], "Reasoning": [],
            "Definition": [definition], "Input_language": ["English"], "Output_language": ["English"],
            "Instruction_language": ["English"], "Domains": ["Synthetic"],
            "Positive Examples": [{"input": rows[0]["input"], "output": rows[0]["output"][0], "explanation": "as asked"}],
            "Negative Examples": [], "Instances": rows, "Instance License": ["Apache 2.0"],
        }
        (folder / f"task{t:04d}_synthetic.json").write_text(json.dumps(task))


def build_corpus(work: Path, tasks: int, instances: int, shard_bytes: int) -> Path:
    files, out = work / "tasks", work / "corpus"
    write_task_files(files, tasks, instances, seed=0)
    argv = [
        sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--output", str(out), "--tasks", "niv2",
        "--source", f"niv2={files}/*.json", "--formats", "parquet,tfrecord", "--few-shot", "0",
        "--target-shard-bytes", str(shard_bytes), "--no-progress", "--no-incremental",
    ]
    subprocess.run(argv, check=True, capture_output=True)
    return out


def draw(corpus: str, examples: int, seed: int) -> dict:
    """In this process: draw `examples` through the trainer's mixture, counting shard reads."""
    from flanforge.training import data

    reads: dict[str, int] = {}
    read_shard = data.read_output_shard

    def counted(manifest, shard, columns):
        reads[shard.path] = reads.get(shard.path, 0) + 1
        return read_shard(manifest, shard, columns)

    data.read_output_shard = counted
    manifest = data.open_corpus(corpus, "parquet")
    shards = data.train_shards(manifest, "parquet", [])
    weights = data.mixture_weights(data.task_sizes(manifest, shards), explicit=data.manifest_mixing_weights(manifest))
    started = time.perf_counter()
    mixture = data.build_mixture(manifest, shards, weights, seed)
    tasks_seen = {next(mixture).task for _ in range(examples)}
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "shards": len(shards), "tasks": len(weights), "tasks_seen": len(tasks_seen),
        "reads": sum(reads.values()), "max_reads_of_a_shard": max(reads.values()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def draw_seqio(corpus: str, examples: int, seed: int) -> dict:
    """In this process: draw `examples` from the corpus's seqio Mixture (seqio must be installed)."""
    import seqio

    from flanforge.training.seqio_tasks import register_corpus

    started = time.perf_counter()
    mixture = seqio.get_mixture_or_task(register_corpus(corpus))
    dataset = mixture.get_dataset(None, split="train", shuffle=False, seed=seed)
    drawn = sum(1 for _ in dataset.take(examples).as_numpy_iterator())
    return {
        "seconds": round(time.perf_counter() - started, 2), "seqio_tasks_mixed": len(mixture.tasks), "drawn": drawn,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def measure(label: str, corpus: Path, examples: int, env: dict[str, str] | None, seqio: bool = False) -> dict:
    argv = [sys.executable, __file__, "--draw-seqio" if seqio else "--draw", str(corpus), "--examples", str(examples)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
    result = {"label": label, **json.loads(done.stdout.strip().splitlines()[-1])}
    if seqio:
        print(f"  seqio, {label:<21} {result['seconds']:>7.2f} s  {result['seqio_tasks_mixed']} Tasks mixed  peak RSS {result['peak_rss_mb']} MB", flush=True)
        return result
    print(
        f"  {label:<28} {result['seconds']:>7.2f} s  {result['reads']:>6} shard reads "
        f"({result['shards']} shards, at most {result['max_reads_of_a_shard']} of one)  "
        f"{result['tasks_seen']}/{result['tasks']} tasks drawn  peak RSS {result['peak_rss_mb']} MB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300, help="task files in the cluster")
    parser.add_argument("--instances", type=int, default=60, help="instances per task file")
    parser.add_argument("--shard-bytes", type=int, default=4 << 20, help="the build's --target-shard-bytes")
    parser.add_argument("--examples", type=int, default=20000, help="examples drawn through the mixture")
    parser.add_argument("--repeat", type=int, default=1, help="draws per code version, interleaved; the fastest is kept")
    parser.add_argument("--before", type=Path, help="also draw with this checkout of an earlier commit")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--seqio", action="store_true", help="also draw through the seqio Mixture (seqio installed; docs/SEQIO.md)")
    parser.add_argument("--draw", help=argparse.SUPPRESS)
    parser.add_argument("--draw-seqio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.draw or args.draw_seqio:
        print(json.dumps(draw(args.draw, args.examples, seed=0) if args.draw else draw_seqio(args.draw_seqio, args.examples, seed=0)))
        return
    with tempfile.TemporaryDirectory(prefix="flanforge-train-input-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        corpus = build_corpus(work, args.tasks, args.instances, args.shard_bytes)
        totals = json.loads((corpus / "manifest.json").read_text())["totals"]
        print(f"corpus: {args.tasks} NIv2 task files x {args.instances} instances -> {totals['written']} records, built in {time.perf_counter() - started:.0f} s")
        versions = [("this checkout", None)] + ([("before", before_env(args.before, work))] if args.before else [])
        runs: dict[str, list[dict]] = {label: [] for label, _ in versions}
        for _ in range(args.repeat):
            for label, env in versions:
                runs[label].append(measure(label, corpus, args.examples, env))
                if args.seqio:
                    runs.setdefault(f"seqio {label}", []).append(measure(label, corpus, args.examples, env, seqio=True))
        best = {label: min(r, key=lambda x: x["seconds"]) for label, r in runs.items()}
        if args.before and args.seqio:
            print(f"seqio before -> after: {best['seqio before']['seconds']:.2f} -> {best['seqio this checkout']['seconds']:.2f} s")
        if args.before:
            now, then = best["this checkout"], best["before"]
            print(f"before -> after: {then['reads']} -> {now['reads']} shard reads, {then['seconds']:.2f} -> {now['seconds']:.2f} s, peak RSS {then['peak_rss_mb']} -> {now['peak_rss_mb']} MB")
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "written": totals["written"], "best": best}, indent=1))


if __name__ == "__main__":
    main()
