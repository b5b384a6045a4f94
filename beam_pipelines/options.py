"""`flanforge build` flags as a Beam PipelineOptions subclass.

Declaring them the Beam way means one argv carries both our flags and Beam's (`--runner
DataflowRunner --project …`, `--direct_num_workers 2`), Dataflow ships them to workers, and
`flanforge build --help` lists them together.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from typing import Any

from flanforge.beam_pipelines.catalog import load_recipe
from flanforge.beam_pipelines.config import BuildConfig, parse_source_overrides


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


class BuildOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        # flanforge's own flags, in the order a user decides them; Beam's options are listed by --help-beam
        what = parser.add_argument_group("what to build")
        sample = parser.add_argument_group("how to render and sample")
        output = parser.add_argument_group("output")
        output.add_argument("--output", help="directory or gs:// prefix for shards, dead letters and manifest.json (required)")
        what.add_argument(
            "--templates",
            help="templates directory, local or gs:// (default: the bundled catalog); one without a clusters.yaml "
            "adds its <cluster>/<task>.yaml specs to the bundled catalog; several, comma-separated, stack in order "
            "(promptsource/templates,my_specs)",
        )
        what.add_argument(
            "--tasks",
            help="comma-separated task names to build (default: all, or those given --source); shell patterns "
            "work ('anli_*'), and so do the single tasks of an NIv2 source (niv2_task1193_food_course_classification, "
            "'niv2_task11*')",
        )
        what.add_argument("--clusters", help="comma-separated clusters to build (adds their tasks)")
        what.add_argument(
            "--recipe", help="a named build config under templates/recipes/ (e.g. flan2021) or a .yaml path; flags override it"
        )
        what.add_argument(
            "--holdout-clusters", "--holdout_clusters", dest="holdout_clusters",
            help="comma-separated clusters to hold out: removed from train with their declared overlaps; "
            "their validation data becomes the eval_zeroshot split (every template, options shown)",
        )
        sample.add_argument(
            "--template-mode", "--template_mode", dest="template_mode",
            help="all (every template per row, default) | round_robin (one per row, as FLAN did) | sample:K",
        )
        sample.add_argument(
            "--max-examples-per-task", "--max_examples_per_task", dest="max_examples_per_task", type=int,
            help="cap each task's train split at N records, chosen by seeded hash with templates kept even (FLAN: 30000)",
        )
        sample.add_argument(
            "--options-variants", "--options_variants", dest="options_variants",
            help="template (default): render options as each template says; both: also render every "
            "options-showing template without its options (template_type zero_shot_no_options)",
        )
        sample.add_argument(
            "--mixing-rate-cap", "--mixing_rate_cap", dest="mixing_rate_cap", type=int,
            help="a task's mixing weight in the manifest is min(train examples, this) (default: 3000, as FLAN)",
        )
        sample.add_argument(
            "--few-shot", "--few_shot", dest="few_shot", type=int,
            help="K > 0: also render every train example with K exemplars from the task's train split "
            "(seeded, never the row itself, formatted by the same template); eval splits stay zero-shot",
        )
        sample.add_argument(
            "--few-shot-separator", "--few_shot_separator", dest="few_shot_separator",
            help="text between exemplars and before the example (default: a blank line)",
        )
        sample.add_argument("--seed", type=int, help="seed for every sampling decision (default: 0)")
        clean = parser.add_argument_group("near-duplicates and contamination (docs/NEAR_DEDUP.md)")
        clean.add_argument(
            "--near-dedup", "--near_dedup", dest="near_dedup", action="store_true", default=None,
            help="also drop examples whose slot text nearly repeats another example of the same split "
            "(MinHash LSH, verified by Jaccard similarity; counted as near_duplicates)",
        )
        clean.add_argument(
            "--near-dedup-threshold", "--near_dedup_threshold", dest="near_dedup_threshold", type=float,
            help="Jaccard similarity of word-shingle sets from which two examples are near-duplicates (default: 0.7)",
        )
        clean.add_argument(
            "--near-dedup-ngram", "--near_dedup_ngram", dest="near_dedup_ngram", type=int,
            help="words per shingle (default: 2; rows are short: with 5-grams one edited word changes most of a sentence's shingles)",
        )
        clean.add_argument(
            "--near-dedup-bands", "--near_dedup_bands", dest="near_dedup_bands",
            help="LSH bands x MinHash values per band (default: 20x6, 120 permutations)",
        )
        clean.add_argument(
            "--contamination-ngram", "--contamination_ngram", dest="contamination_ngram", type=int,
            help="words per n-gram shared with evaluation data that marks a train example as contaminated "
            "(default: 13; 0 turns the check, reported in the manifest for every build, off)",
        )
        clean.add_argument(
            "--decontaminate", action="store_true", default=None,
            help="drop train examples found in evaluation data (the build's own validation/test/eval_zeroshot "
            "splits and --decontaminate-against sets), counted as contaminated",
        )
        clean.add_argument(
            "--decontaminate-against", "--decontaminate_against", dest="decontaminate_against", action="append",
            metavar="PATH[#field=NAME]",
            help="an external evaluation set to check against (JSONL, Parquet, CSV/TSV; local or gs://); "
            "its text is the field NAME (default: text); repeatable",
        )
        output.add_argument("--formats", help="comma-separated: tfrecord, parquet, jsonl (default: tfrecord,parquet)")
        output.add_argument(
            "--target-shard-bytes", "--target_shard_bytes", dest="target_shard_bytes", type=int,
            help="approximate size of one output shard (default: 128 MiB)",
        )
        output.add_argument(
            "--no-incremental", "--no_incremental", dest="incremental", action="store_false", default=None,
            help="read and render every task, and keep no render cache (.flanforge_cache/ under --output); "
            "by default a rebuild into the same output reuses the renders of unchanged tasks",
        )
        output.add_argument(
            "--max-error-rate", "--max_error_rate", dest="max_error_rate", type=float,
            help="fail the build (exit 1, no manifest) when a task reads no rows, or when more than this share "
            "of a task's records is unreadable or of its template applications fails (default: 0.01)",
        )
        what.add_argument("--demo", action="store_true", help="build from the sample rows bundled in each spec (offline)")
        output.add_argument(
            "--force", action="store_true",
            help="build into an --output that does not look like a flanforge output (a non-empty directory, "
            "a foreign manifest.json); a build still only deletes files its previous manifest listed",
        )
        what.add_argument(
            "--source", action="append", metavar="TASK[:SPLIT]=PATH_OR_GLOB[#OPTIONS]",
            help="read a task's split (default train) from files instead of its default source: .jsonl/.json, "
            ".csv, .tsv, .parquet, .tfrecord (also .gz for text) or a save_to_disk directory; repeatable. "
            "#OPTIONS say how to read them, e.g. '#format=tsv,header=false,columns=id|text|label' "
            "(format, header, columns, delimiter, quoting, encoding, types, explode; docs/TASK_SPECS.md)",
        )

    def to_config(self) -> BuildConfig:
        """Flags given on the command line, else the recipe's values, else BuildConfig's defaults."""
        settings: dict[str, Any] = load_recipe(self.recipe, self.templates) if self.recipe else {}
        if isinstance(settings.get("holdout_clusters"), list):
            settings["holdout_clusters"] = tuple(settings["holdout_clusters"])
        if isinstance(settings.get("decontaminate_against"), list):
            settings["decontaminate_against"] = tuple(settings["decontaminate_against"])
        given = {
            "template_mode": self.template_mode,
            "max_examples_per_task": self.max_examples_per_task,
            "seed": self.seed,
            "formats": _csv(self.formats) or None,
            "target_shard_bytes": self.target_shard_bytes,
            "holdout_clusters": _csv(self.holdout_clusters) or None,
            "options_variants": self.options_variants,
            "mixing_rate_cap": self.mixing_rate_cap,
            "few_shot": self.few_shot,
            "incremental": self.incremental,
            "max_error_rate": self.max_error_rate,
            "near_dedup": self.near_dedup,
            "near_dedup_threshold": self.near_dedup_threshold,
            "near_dedup_ngram": self.near_dedup_ngram,
            "near_dedup_bands": self.near_dedup_bands,
            "contamination_ngram": self.contamination_ngram,
            "decontaminate": self.decontaminate,
            "decontaminate_against": tuple(self.decontaminate_against) if self.decontaminate_against else None,
            "few_shot_separator": None if self.few_shot_separator is None else self.few_shot_separator.encode().decode("unicode_escape"),
        }
        settings.update({k: v for k, v in given.items() if v is not None})
        unknown = sorted(set(settings) - set(BuildConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"recipe {self.recipe}: unknown setting(s) {', '.join(unknown)}")
        return BuildConfig(
            output=self.output,
            templates=self.templates,
            tasks=_csv(self.tasks),
            clusters=_csv(self.clusters),
            demo=self.demo,
            sources=parse_source_overrides(self.source),
            **settings,
        )
