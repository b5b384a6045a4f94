"""The fused read-and-render step, its spill files and summaries, and the Render stage on its own."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.counting import COUNTS
from flanforge.beam_pipelines.layout import ShardLayout
from flanforge.beam_pipelines.render import CompiledTask, RenderSettings
from flanforge.beam_pipelines.render_shard import ShardRenderer
from flanforge.beam_pipelines.sources import plan_reads
from flanforge.beam_pipelines.spill import HashSummary, SpillWriter, read_spilled
from flanforge.beam_pipelines.transforms import SUMMARIES, RenderJob, RenderShards

LAYOUT = ShardLayout({"train/nli": 3, "validation/nli": 1})


@pytest.fixture
def rte(tmp_path: Path, templates_dir: Path):
    rows = [{"premise": f"Premise {i}.", "hypothesis": f"Claim {i % 4}.", "label": i % 2, "idx": i} for i in range(40)]
    del rows[7]["hypothesis"]  # a row that cannot be prepared: all of its applications fail
    path = tmp_path / "rte.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    spec = load_catalog(templates_dir).tasks["rte"]
    return CompiledTask(spec), plan_reads(spec, demo=False, overrides={"train": str(path)})


def run(renderer_pass, compiled, shard, tmp_path, name, *args):
    tally: collections.Counter = collections.Counter()
    dead: list = []
    renderer = ShardRenderer(compiled, RenderSettings(seed=3), lambda t, c, n: tally.update({c: n}), dead.append)
    sink = SpillWriter(str(tmp_path / f"{name}.arrow"), LAYOUT, "rte", "train", flush_rows=16)
    getattr(renderer, renderer_pass)(shard, sink, {}, *args)
    refs, summary = sink.close()
    return tally, dead, refs, summary


def test_render_all_spills_every_record_by_destination_and_counts_every_row(tmp_path, rte):
    compiled, [shard] = rte
    tally, dead, refs, summary = run("render_all", compiled, shard, tmp_path, "all")
    n = compiled.n_templates
    assert tally == {"read": 40, "read_errors": 1, "template_applications": 40 * n, "rendered": 39 * n, "failed": n}
    assert {d["stage"] for d in dead} == {"read", "render"}
    table = read_spilled(ref for _, ref in refs)
    assert table.num_rows == len(summary.hi) == 39 * n
    for dest, ref in refs:  # every batch holds only its own output shard's records
        hashes = read_spilled([ref]).column("content_hash").to_pylist()
        assert {LAYOUT.destination("train", "nli", h) for h in hashes} == {dest}
    assert len(summary.candidate_index) == 0  # nothing capped
    assert HashSummary.from_bytes(summary.to_bytes()).hi.tolist() == summary.hi.tolist()


def test_candidates_and_top_up_render_exactly_the_applications_between_them(tmp_path, rte):
    compiled, [shard] = rte
    everything = read_spilled(ref for _, ref in run("render_all", compiled, shard, tmp_path, "all")[2])
    first, _, first_refs, first_summary = run("render_candidates", compiled, shard, tmp_path, "first", 3)
    rest, _, rest_refs, _ = run("render_top_up", compiled, shard, tmp_path, "rest", 3)
    n = compiled.n_templates
    assert first["rendered"] == 3 * n and first["capped"] == 39 * n - 3 * n
    assert rest["capped"] == -first["capped"] and "read" not in rest  # the top-up counts no row twice
    assert len(first_summary.candidate_index) == 3 * n  # every candidate carries its sampling key
    per_template = collections.Counter(first_summary.template_ids)
    assert set(per_template.values()) == {3}
    both = sorted(read_spilled(ref for _, ref in first_refs + rest_refs).column("content_hash").to_pylist())
    assert both == sorted(everything.column("content_hash").to_pylist())


def test_render_stage_emits_refs_summaries_and_counts(tmp_path, rte):
    compiled, shards = rte
    with TestPipeline() as p:
        job = RenderJob((compiled.spec,), {"rte": RenderSettings()}, LAYOUT, str(tmp_path / "out"), {"rte": "spill/rte"}, {})
        out = p | RenderShards(shards, job, pools=p | "NoPools" >> beam.Create([]))
        assert_that(out["refs"] | beam.Map(lambda kv: kv[1].rows) | "Sum" >> beam.CombineGlobally(sum), equal_to([39 * compiled.n_templates]), label="refs")
        assert_that(out[SUMMARIES] | beam.Map(lambda s: (s.task, s.split, len(s.hi))), equal_to([("rte", "train", 39 * compiled.n_templates)]), label="summaries")
        counts = out[COUNTS] | "Counts" >> beam.CombinePerKey(sum) | beam.Filter(lambda kv: kv[0][1] in ("read", "read_errors"))
        assert_that(counts, equal_to([(("rte", "read"), 40), (("rte", "read_errors"), 1)]), label="counts")
