"""The SST-2 job written without flanforge: the baseline that data_plane.py compares a build against.

This is what a competent user would write with `datasets`, `jinja2`, `pandas` and `pyarrow`
instead of running `flanforge build`, and it does the same work as
`flanforge build --source sst2=train.tsv --source sst2:validation=validation.tsv
--max-examples-per-task N`:

  read       train.tsv and validation.tsv with `datasets` (cache in a temporary directory, so
             nothing is reused between runs)
  filter     keep rows whose label is 0 or 1 (the spec's filter)
  render     every template of templates/sentiment/sst2.yaml on every row, through one
             `Dataset.map(batched=True)` per split; templates are compiled once; the options
             block is appended as flanforge does (templates that show options and are not inverted)
  dedup      exact, within each split, on the normalised (inputs, targets) pair (NFKC, casefold,
             whitespace runs collapsed), with pandas
  cap        the train split at N records (default 30,000): the N smallest seeded xxh3 hashes of
             the content
  write      one zstd Parquet file per split

It prints the rows rendered (rows that pass the filter x templates), the rows written and the
seconds taken.

    python benchmarks/plain_script.py --output /tmp/sst2_plain
    python benchmarks/plain_script.py --train train.tsv --validation dev.tsv --output out --max-train 30000
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import jinja2
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent / "templates" / "sentiment" / "sst2.yaml"
REALDATA = HERE.parent.parent / "shared" / "realdata" / "sst2"
COLUMNS = ("inputs", "targets", "template_id", "split", "example_id")


@dataclass(frozen=True)
class Template:
    template_id: str
    inputs: jinja2.Template
    targets: jinja2.Template
    options_block: str  # appended to inputs: "" or "\n\nOPTIONS:\n- negative\n- positive"


@dataclass(frozen=True)
class Result:
    rendered: int  # rows that pass the filter x templates, both splits
    written: dict[str, int]  # split -> rows written
    seconds: float


def load_templates(spec_path: Path) -> tuple[list[Template], list[str]]:
    """Compile every template of the spec once; return them with the task's answer options."""
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    options = list(spec["answers"]["options"])
    block = "\n\nOPTIONS:\n" + "\n".join(f"- {o}" for o in options)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    templates = [
        Template(
            t["id"],
            env.from_string(t["inputs"]),
            env.from_string(t["targets"]),
            block if t.get("show_options", True) and not t.get("inverted", False) else "",
        )
        for t in spec["templates"]
    ]
    return templates, options


def render_batch(
    batch: dict[str, list[Any]], indices: list[int], *, split: str, templates: list[Template], options: list[str]
) -> dict[str, list[str]]:
    """Every template on every row of a batch: len(templates) output rows per input row."""
    out: dict[str, list[str]] = {c: [] for c in COLUMNS}
    for index, sentence, label in zip(indices, batch["sentence"], batch["label"]):
        variables = {
            "sentence": sentence,
            "label": label,
            "text": sentence.strip(),
            "options": options,
            "answer": options[label],
            "answer_index": label,
        }
        example_id = f"{split}-{index}"
        for t in templates:
            out["inputs"].append(t.inputs.render(variables).strip() + t.options_block)
            out["targets"].append(t.targets.render(variables).strip())
            out["template_id"].append(t.template_id)
            out["split"].append(split)
            out["example_id"].append(example_id)
    return out


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedup_and_cap(df: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """Drop exact duplicates of the normalised pair; then keep the `cap` smallest seeded hashes."""
    keys = [xxhash.xxh3_128_hexdigest(f"{normalise(i)}\x1f{normalise(t)}".encode()) for i, t in zip(df["inputs"], df["targets"])]
    df = df.assign(key=keys).drop_duplicates("key")
    if cap is not None and len(df) > cap:
        df = df.assign(rank=[xxhash.xxh3_64_intdigest(k.encode(), seed=seed) for k in df["key"]]).nsmallest(cap, "rank")
    return df[list(COLUMNS)]


def run(train: Path, validation: Path, output: Path, *, max_train: int | None = 30_000, seed: int = 0, spec: Path = SPEC) -> Result:
    start = time.perf_counter()
    templates, options = load_templates(spec)
    output.mkdir(parents=True, exist_ok=True)
    rendered = 0
    written: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="hf_cache_") as cache:
        splits = datasets.load_dataset(
            "csv",
            data_files={"train": str(train), "validation": str(validation)},
            delimiter="\t",
            quoting=csv.QUOTE_NONE,  # a TSV: quote characters are text
            keep_default_na=False,  # a phrase such as "null" or "nan" is text, not a missing value
            cache_dir=cache,
        )
        for split, ds in splits.items():
            ds = ds.filter(lambda labels: [label in (0, 1) for label in labels], input_columns="label", batched=True)
            ds = ds.map(
                render_batch,
                batched=True,
                with_indices=True,
                remove_columns=ds.column_names,
                fn_kwargs={"split": split, "templates": templates, "options": options},
            )
            rendered += len(ds)
            df = dedup_and_cap(ds.to_pandas(), max_train if split == "train" else None, seed)
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), output / f"{split}.parquet", compression="zstd")
            written[split] = len(df)
    return Result(rendered, written, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=REALDATA / "train.tsv", help="SST-2 train TSV (sentence, label)")
    parser.add_argument("--validation", type=Path, default=REALDATA / "validation.tsv", help="SST-2 validation TSV")
    parser.add_argument("--output", type=Path, required=True, help="directory for train.parquet and validation.parquet")
    parser.add_argument("--max-train", type=int, default=30_000, help="cap on train records, 0 = no cap (default 30000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the capping hash")
    parser.add_argument("--summary-json", type=Path, help="also write the result as JSON here (data_plane.py reads it)")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    result = run(args.train, args.validation, args.output, max_train=args.max_train or None, seed=args.seed)
    print(
        f"rendered {result.rendered:,} rows, wrote {sum(result.written.values()):,} "
        f"({', '.join(f'{s} {n:,}' for s, n in result.written.items())}) in {result.seconds:.1f}s "
        f"= {result.rendered / result.seconds:,.0f} rendered rows/s"
    )
    if args.summary_json:
        args.summary_json.write_text(json.dumps(asdict(result)), encoding="utf-8")


if __name__ == "__main__":
    main()
