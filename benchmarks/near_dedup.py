"""Near-dedup and contamination figures, measured side by side in one run.

  A cost       the SST-2 job of data_plane.py's figure 1 (real train capped at 30,000 + validation),
               1 process, three ways, interleaved: the contamination check off (`--contamination-ngram
               0`, what every build did before it existed), the default (check on), and `--near-dedup`
               on top. Wall time, peak RSS, and each stage's throughput: examples sketched per
               second of extra wall time.
  B quality    a planted set: N distinct real SST-2 sentences paired into two-sentence rows, plus P
               copies of some of them with one planted change each (upper case, punctuation,
               whitespace, the two sentences swapped, one word replaced, one word inserted). An
               uncapped `--near-dedup` build; precision = removed examples that are planted
               copies or their originals (one of each pair), recall = planted pairs of which one
               example was removed. A distinct row removed is a false positive.

    python benchmarks/near_dedup.py [--realdata ../shared/realdata] [--repeat 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_plane import CAP, DEFAULT_REALDATA, build, interleaved, measure, read_sst2, sst2_job  # noqa: E402

EDITS = ("upper", "punctuation", "whitespace", "swap", "replace", "insert")


def planted_rows(sentences: list[str], distinct: int, planted: int) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Two-sentence rows (idx 0..distinct-1) and planted copies (idx from distinct), with the pairs."""
    usable = [s.strip() for s in sentences if len(s.split()) >= 6]
    rows = [
        {"idx": i, "sentence": f"{usable[2 * i].capitalize()}. {usable[2 * i + 1].capitalize()}.", "label": i % 2}
        for i in range(distinct)
    ]
    pairs = []
    for j in range(planted):
        original = rows[(j * 7919) % distinct]
        first, second = original["sentence"].split(". ", 1)
        edit = EDITS[j % len(EDITS)]
        words = original["sentence"].split()
        text = {
            "upper": original["sentence"].upper(),
            "punctuation": original["sentence"].replace(".", "!"),
            "whitespace": "  ".join(words),
            "swap": f"{second} {first}.",
            "replace": " ".join(words[:2] + ["remarkable"] + words[3:]),
            "insert": " ".join(words[:4] + ["truly"] + words[4:]),
        }[edit]
        rows.append({"idx": distinct + j, "sentence": text, "label": original["label"]})
        pairs.append((original["idx"], distinct + j))
    return rows, pairs


def figure_cost(realdata: Path, work: Path, repeat: int) -> dict[str, Any]:
    _, _, sources = sst2_job(realdata)
    cap = ["--max-examples-per-task", str(CAP)]
    off, default, near = interleaved(
        repeat,
        lambda i: build("contamination check off", sources, work, f"cost_off_{i}", cap + ["--contamination-ngram", "0"])[0],
        lambda i: build("default (contamination check)", sources, work, f"cost_default_{i}", cap)[0],
        lambda i: build("--near-dedup", sources, work, f"cost_near_{i}", cap + ["--near-dedup"])[0],
    )
    examples = off.corpus_rows or 0
    return {
        "runs": [r.__dict__ for r in (off, default, near)],
        "examples": examples,
        "contamination_wall_ratio": default.wall_s / off.wall_s,
        "near_dedup_wall_ratio": near.wall_s / default.wall_s,
        "contamination_examples_per_s": examples / max(default.wall_s - off.wall_s, 1e-9),
        "near_dedup_examples_per_s": examples / max(near.wall_s - default.wall_s, 1e-9),
    }


def kept_ids(out: Path) -> set[int]:
    import pyarrow.dataset as ds

    table = ds.dataset(out / "parquet", format="parquet").to_table(columns=["example_id"])
    return {int(e.rsplit(":", 1)[1]) for e in table.column("example_id").to_pylist()}


def figure_quality(realdata: Path, work: Path, distinct: int, planted: int) -> dict[str, Any]:
    sentences = [s for s, _ in read_sst2(realdata / "sst2" / "train.tsv", None)]
    rows, pairs = planted_rows(sentences, distinct, planted)
    path = work / "planted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = work / "planted_out"
    argv = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--tasks", "sst2", "--source", f"sst2={path}",
            "--output", out, "--no-incremental", "--no-progress", "--formats", "parquet", "--near-dedup"]
    wall, _, _ = measure(argv, work, "planted")
    kept = kept_ids(out)
    removed = {r["idx"] for r in rows} - kept
    in_pairs = {i for pair in pairs for i in pair}
    found = sum(1 for a, b in pairs if (a in removed) != (b in removed))
    manifest = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(out)
    return {
        "distinct_rows": distinct, "planted_pairs": planted, "removed_examples": len(removed),
        "precision": len(removed & in_pairs) / max(len(removed), 1), "recall": found / planted,
        "false_positives": sorted(removed - in_pairs)[:20], "wall_s": wall,
        "near_duplicates_records": manifest["totals"]["near_duplicates"], "duplicates_records": manifest["totals"]["duplicates"],
        "by_edit": {e: sum(1 for j, (a, b) in enumerate(pairs) if j % len(EDITS) == k and (a in removed) != (b in removed)) for k, e in enumerate(EDITS)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--distinct", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=600)
    parser.add_argument("--only", default="A,B")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="flanforge-near-dedup-") as tmp:
        work = Path(tmp)
        if "B" in args.only:
            results["quality"] = figure_quality(args.realdata, work, args.distinct, args.planted)
            q = results["quality"]
            print(f"B quality: {q['planted_pairs']} planted pairs in {q['distinct_rows']} distinct rows: precision {q['precision']:.3f}, "
                  f"recall {q['recall']:.3f}; by edit {q['by_edit']}; false positives {q['false_positives']}")
        if "A" in args.only:
            results["cost"] = figure_cost(args.realdata, work, args.repeat)
            c = results["cost"]
            print(f"A cost on SST-2 ({c['examples']} examples): contamination check x{c['contamination_wall_ratio']:.2f} wall "
                  f"({c['contamination_examples_per_s']:,.0f} examples/s), --near-dedup x{c['near_dedup_wall_ratio']:.2f} more "
                  f"({c['near_dedup_examples_per_s']:,.0f} examples/s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
