"""Caps end to end: only candidates are rendered, the written count is min(cap, what the source
gives after dedup) (the top-up pass makes up for duplicates), templates stay even, output is
deterministic and every application is accounted for."""
from __future__ import annotations

import collections
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.manifest import accounting_errors, read_manifest


def build(out: Path, source: Path, templates: Path, *extra: str):
    args = ["--output", str(out), "--templates", str(templates), "--source", f"rte={source}", "--no-progress", *extra]
    assert run_build_cli(args, io.StringIO()) == 0
    m = read_manifest(str(out))
    assert accounting_errors(m.tasks) == []
    return m


def template_counts(out: Path) -> collections.Counter:
    files = sorted((out / "parquet" / "train").rglob("*.parquet"))
    return collections.Counter(t for f in files for t in pq.ParquetFile(f).read().column("template_id").to_pylist())


@pytest.fixture
def mostly_duplicates(tmp_path: Path) -> Path:
    """400 rows, all alike but every 40th: 11 distinct renders per template, so a first pass of
    random candidates finds few survivors and the top-up pass has to render the rest."""
    path = tmp_path / "rte.jsonl"
    rows = [{"premise": f"Premise {i}." if i % 40 == 0 else "The same premise.", "hypothesis": "A claim.", "label": 0, "idx": i} for i in range(400)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cap_above_what_dedup_leaves_writes_everything_that_is_left(tmp_path, templates_dir, mostly_duplicates):
    m = build(tmp_path / "out", mostly_duplicates, templates_dir, "--max-examples-per-task", "300")
    counts = m.tasks["rte"].counts
    templates = m.tasks["rte"].templates
    assert counts["written"] == 11 * templates  # every distinct render, though the first pass saw only some
    assert counts["capped"] == 0 and counts["duplicates"] == 400 * templates - 11 * templates
    assert counts["rendered"] == 400 * templates  # the top-up pass rendered what the first pass left


def test_cap_below_what_dedup_leaves_writes_exactly_the_cap_with_templates_even(tmp_path, templates_dir, mostly_duplicates):
    out = tmp_path / "out"
    m = build(out, mostly_duplicates, templates_dir, "--max-examples-per-task", "55")
    counts = m.tasks["rte"].counts
    assert counts["written"] == 55 and m.tasks["rte"].written_by_split == {"train": 55}
    assert set(template_counts(out).values()) <= {5, 6}
    again = build(tmp_path / "again", mostly_duplicates, templates_dir, "--max-examples-per-task", "55")
    assert {s.path: s.sha256 for s in again.shards} == {s.path: s.sha256 for s in m.shards}


def test_a_capped_task_renders_only_its_candidates(tmp_path, templates_dir):
    path = tmp_path / "rte.jsonl"
    path.write_text("".join(json.dumps({"premise": f"Premise {i}.", "hypothesis": f"Claim {i}.", "label": i % 2, "idx": i}) + "\n" for i in range(2000)))
    m = build(tmp_path / "out", path, templates_dir, "--max-examples-per-task", "100")
    counts = m.tasks["rte"].counts
    assert counts["written"] == 100 and counts["template_applications"] == 2000 * m.tasks["rte"].templates
    assert counts["rendered"] < 4 * 100  # candidates only, not 20,000 renders


def test_few_shot_with_a_cap_rebuilds_from_the_cache_identically(tmp_path, templates_dir, mostly_duplicates):
    """A cached capped task can still need the top-up pass; it must find its exemplar pool then too."""
    out = tmp_path / "out"
    flags = ("--max-examples-per-task", "55", "--few-shot", "2")
    first = build(out, mostly_duplicates, templates_dir, *flags)
    again = build(out, mostly_duplicates, templates_dir, *flags)
    assert again.tasks["rte"].from_cache and again.tasks["rte"].counts == first.tasks["rte"].counts
    assert first.tasks["rte"].counts["failed"] == 0 and first.tasks["rte"].counts["written"] == 55
    assert {s.path: s.sha256 for s in again.shards} == {s.path: s.sha256 for s in first.shards}
