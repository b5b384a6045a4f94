"""docs/CATALOG.md, generated from the specs so it cannot go stale (a test compares the two)."""
from __future__ import annotations

import json
import re

from flanforge.beam_pipelines.catalog import Catalog

HEADER = """\
# Task catalog

Generated from `templates/` by `flanforge catalog --write docs/CATALOG.md`; do not edit by hand.
"""


HUB_FILES = re.compile(r"hf://datasets/([^/@]+/[^/@]+)")


def _source(spec) -> str:
    src = spec.source
    if src.kind != "hf":
        return f"`{src.kind} files`"
    hub = HUB_FILES.search(json.dumps(src.data_files)) if src.data_files else None
    if hub:  # a packaged builder (parquet, json) over a hub dataset's own files: name the dataset
        return f"`{hub.group(1)}` ({src.path} files)"
    return f"`{src.path}" + (f" / {src.name}" if src.name else "") + "`"


def catalog_markdown(catalog: Catalog) -> str:
    tasks = sorted(catalog.tasks.values(), key=lambda t: (t.cluster, t.name))
    n_templates = sum(len(t.templates) for t in tasks)
    lines = [
        HEADER,
        f"{len(tasks)} tasks in {len({t.cluster for t in tasks})} clusters, {n_templates} templates.",
        "",
        "| task | cluster | source (HF hub id / config) | TFDS | templates | inverted | options | metric |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tasks:
        inverted = sum(1 for x in t.templates if x.inverted)
        options = "no" if t.answers is None else ("yes: " + ", ".join(t.answers.options) if isinstance(t.answers.options, tuple) else "yes (per row)")
        lines.append(
            f"| {t.name} | {t.cluster} | {_source(t)} | {t.source.tfds or ''} | {len(t.templates)} | {inverted} | {options} | {t.metric} |"
        )
    if catalog.holdout_overlaps:
        lines += ["", "Holding out a cluster also removes its overlaps from training: " + "; ".join(f"{a} ↔ {b}" for a, b in catalog.holdout_overlaps) + "."]
    return "\n".join(lines) + "\n"
