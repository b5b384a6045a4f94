"""WriteManifest and the render cache as stages on their own (TestPipeline)."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import xxhash
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.counting import COUNTS, DEAD_LETTERS
from flanforge.beam_pipelines.incremental import INDEX_NAME, ReadRenderCache, WriteRenderCache, entry_dir, load_entry
from flanforge.beam_pipelines.manifest import DataQualityError, WriteManifest
from flanforge.beam_pipelines.spill import HashSummary, SpillRef, hash_halves
from flanforge.beam_pipelines.transforms import SUMMARIES
from flanforge.schemas.manifest import read_manifest

SHARD = {"path": "parquet/train/nli/part-00000-of-00001.parquet", "format": "parquet", "split": "train",
         "cluster": "nli", "rows": 7, "bytes": 10, "sha256": "0" * 64}


def run_manifest(out: Path, counts: list, max_error_rate: float = 0.01) -> None:
    rte = load_catalog().tasks["rte"]
    with TestPipeline() as p:
        _ = (
            p | "Shards" >> beam.Create([SHARD]),
            p | "Counts" >> beam.Create(counts),
            p | "Dead" >> beam.Create([]),
        ) | WriteManifest(BuildConfig(output=str(out), max_error_rate=max_error_rate), [rte], (), {"rte": "fp"}, frozenset({"rte"}))


def test_write_manifest_publishes_counts_that_add_up(tmp_path):
    counts = [(("rte", "read"), 1), (("rte", "template_applications"), 10), (("rte", "written"), 7), (("rte", "written@train"), 7), (("rte", "duplicates"), 3)]
    run_manifest(tmp_path, counts)
    m = read_manifest(str(tmp_path))
    assert m.tasks["rte"].counts["written"] == 7 and m.tasks["rte"].written_by_split == {"train": 7}
    assert m.tasks["rte"].fingerprint == "fp" and m.tasks["rte"].from_cache


def test_write_manifest_refuses_to_publish_when_rows_are_missing(tmp_path):
    with pytest.raises(Exception, match="rows unaccounted for") as caught:
        run_manifest(tmp_path, [(("rte", "template_applications"), 10), (("rte", "written"), 7)])
    assert "rte: template_applications=10" in str(caught.value)
    assert not (tmp_path / "manifest.json").exists()


def test_write_manifest_refuses_to_publish_when_too_much_failed(tmp_path):
    counts = [(("rte", "read"), 10), (("rte", "template_applications"), 100), (("rte", "written"), 98), (("rte", "failed"), 2)]
    with pytest.raises(DataQualityError, match=r"rte: 2 of 100 template applications failed \(2.0%\)"):
        run_manifest(tmp_path, counts)
    assert not (tmp_path / "manifest.json").exists()
    run_manifest(tmp_path, counts, max_error_rate=0.05)  # a known-dirty source: the rate raised, it publishes
    assert read_manifest(str(tmp_path)).tasks["rte"].counts["failed"] == 2


def test_render_cache_round_trip_replays_refs_summaries_counts_and_dead_letters(tmp_path):
    out = str(tmp_path)
    rel = f"{entry_dir('rte', 'fp1')}/abc"
    summary = HashSummary("rte", "train", *hash_halves(["0" * 32, "f" * 32]), candidate_index=np.zeros(0, dtype=np.int64))
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / f"{rel}.summary.npz").write_bytes(summary.to_bytes())
    (tmp_path / f"{rel}.arrow").write_bytes(b"spilled records")
    dest = ["train", "nli", 0, 1]
    files = {"task": "rte", "spill": f"{rel}.arrow", "summary": f"{rel}.summary.npz", "refs": [[dest, [0, 2], 5]],
             "spill_xxh3": xxhash.xxh3_128_hexdigest(b"spilled records"), "summary_xxh3": xxhash.xxh3_128_hexdigest(summary.to_bytes())}
    letter = {"stage": "read", "task": "rte", "split": "train", "where": "x at 3", "error": "bad", "template_applications": 0}
    with TestPipeline() as p:
        written = (
            p | "Files" >> beam.Create([files]),
            p | "Dead" >> beam.Create([letter]),
            p | "Counts" >> beam.Create([(("rte", "read"), 4), (("rte", "read"), 1), (("other", "read"), 9)]),
        ) | WriteRenderCache(out, {"rte": "fp1"})
        assert_that(written, equal_to([f"{entry_dir('rte', 'fp1')}/{INDEX_NAME}"]))
    entry = load_entry(out, "rte", "fp1")
    assert entry is not None and entry.counts["read"] == 5 and entry.dead_letters == (letter,)
    with TestPipeline() as p:
        replayed = p | ReadRenderCache(out, [entry])
        assert_that(replayed["refs"], equal_to([(tuple(dest), SpillRef(f"{out}/{rel}.arrow", (0, 2), 5))]), label="refs")
        assert_that(replayed[SUMMARIES] | beam.Map(lambda s: (s.task, s.hi.tolist())), equal_to([("rte", summary.hi.tolist())]), label="summaries")
        assert_that(replayed[DEAD_LETTERS], equal_to([letter]), label="dead")
        assert_that(replayed[COUNTS] | beam.Filter(lambda kv: kv[1]), equal_to([(("rte", "read"), 5)]), label="counts")
    assert json.loads((tmp_path / entry_dir("rte", "fp1") / INDEX_NAME).read_text())["shards"][0]["refs"] == [[dest, [0, 2], 5]]
