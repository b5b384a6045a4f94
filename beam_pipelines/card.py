"""The dataset card: a README.md at the output root, in the Hugging Face convention.

Its YAML header lists `configs` with `data_files` per split (the whole corpus as `default`, and
one config per cluster), so `datasets.load_dataset(<output>)` loads every split under its own
name, `eval_zeroshot` included, locally or from the hub after an upload of the folder. The body
says what was built and how, and the counts per split, cluster and task, from the manifest.
It is derived from the manifest alone, so it is as deterministic as the shards.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import yaml

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.schemas.manifest import Manifest

CARD_NAME = "README.md"
CARD_MARK = "<!-- flanforge dataset card: written by `flanforge build`; rebuilt with the corpus -->"
CARD_FORMATS = ("parquet", "jsonl")  # what `datasets` reads, in order of preference


def _data_files(fmt: str, splits: list[str], cluster: str = "*") -> list[dict[str, str]]:
    ext = "parquet" if fmt == "parquet" else "jsonl"
    return [{"split": split, "path": f"{fmt}/{split}/{cluster}/*.{ext}"} for split in splits]


def built_with(settings: Mapping[str, Any] | None) -> str:
    """A collection's render settings in a few words (`-` for a manifest older than them)."""
    if not settings:
        return "-"
    cap = settings.get("max_examples_per_task")
    shots = settings.get("few_shot") or 0
    return ", ".join([
        f"templates {settings.get('template_mode')}", "uncapped" if cap is None else f"at most {cap} per task",
        "options also hidden" if settings.get("options_variants") == "both" else "options as templated",
        f"zero-shot and {shots}-shot" if shots else "zero-shot",
    ])


def dataset_card(manifest: Manifest, tasks: Iterable[TaskSpec], formats: Iterable[str]) -> str:
    specs = {t.name: t for t in tasks}
    fmt = next((f for f in CARD_FORMATS if f in set(formats)), None)
    splits = sorted({s.split for s in manifest.shards if s.rows})
    clusters = sorted({s.cluster for s in manifest.shards if s.rows})
    header: dict = {
        "pretty_name": "flanforge instruction-tuning corpus",
        "task_categories": ["text2text-generation"],
        "tags": ["flanforge", "instruction-tuning"],
    }
    if fmt:
        header["configs"] = [{"config_name": "default", "data_files": _data_files(fmt, splits)}] + [
            {
                "config_name": cluster,
                "data_files": _data_files(fmt, sorted({s.split for s in manifest.shards if s.rows and s.cluster == cluster}), cluster),
            }
            for cluster in clusters
        ]
    config = manifest.config
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        CARD_MARK,
        "",
        "# flanforge instruction-tuning corpus",
        "",
        f"Built by flanforge {manifest.flanforge_version}"
        + (f" from recipe `{config.get('recipe')}`" if config.get("recipe") else "")
        + f", seed {config.get('seed')}, template mode `{config.get('template_mode')}`"
        + (f", held-out clusters {', '.join(manifest.holdout_clusters)} (their data is the `eval_zeroshot` split)" if manifest.holdout_clusters else "")
        + ". `manifest.json` lists every file with its sha256 and the full build settings.",
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        "",
        'corpus = datasets.load_dataset("path/to/this/folder")  # every split' if fmt else "# no Parquet or JSON Lines shards in this build: read the TFRecord files with tf.data",
        *([f'one_cluster = datasets.load_dataset("path/to/this/folder", "{clusters[0]}")  # a config per cluster'] if fmt and clusters else []),
        "```",
        "",
        "## Splits",
        "",
        "| split | records |",
        "|---|---|",
        *[f"| {split} | {sum(t.written_by_split.get(split, 0) for t in manifest.tasks.values())} |" for split in splits],
        "",
        "## Collections",
        "",
        "A task's share of training (`rate`) is its collection's share, split among the collection's tasks",
        "in proportion to their mixing weights (docs/COLLECTIONS.md in flanforge).",
        "",
        "| collection | weight | rate | tasks | written | train | built with |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {'-' if c['weight'] is None else format(c['weight'], 'g')} | {c['rate']:.4f} | {c['tasks']} | {c['written']} | {c['train']} "
            f"| {built_with(c.get('settings'))} |"
            for name, c in manifest.collections.items()
        ],
        "",
        "## Tasks",
        "",
        "| task | cluster | collection | templates | written | mixing weight | rate | license |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(manifest.tasks.items()):
        license_text = " ".join((specs[name].license if name in specs else "").split()).replace("|", "/")
        lines.append(
            f"| {name} | {entry.cluster} | {entry.collection} | {entry.templates} | {entry.counts.get('written', 0)} "
            f"| {entry.mixing_weight} | {entry.rate:.4f} | {license_text} |"
        )
    lines += [
        "",
        "Each task keeps the license of its source dataset (the table above, from the task specs); check",
        "them before redistributing this corpus.",
        "",
    ]
    return "\n".join(lines)
