"""The shard layout estimate and the WriteShards stage on its own: dedup within a cluster, drops
decided elsewhere (cross-cluster winners, cap thresholds), sorted rows, every shard written."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.counting import COUNTS
from flanforge.beam_pipelines.hashing import content_hash
from flanforge.beam_pipelines.layout import ShardLayout, plan_layout, profile_task
from flanforge.beam_pipelines.render import CompiledTask, TemplateMode
from flanforge.beam_pipelines.shards import WriteShards
from flanforge.beam_pipelines.sources import plan_reads
from flanforge.beam_pipelines.spill import SpillWriter


def record(task, example_id, template_id, text, cluster="nli"):
    return {
        "inputs": text, "targets": "yes", "task": task, "cluster": cluster, "collection": "flan2021", "template_id": template_id,
        "template_type": "zero_shot", "options": ["yes", "no"], "answer_index": 0, "split": "train",
        "example_id": example_id, "content_hash": content_hash(text, "yes"),
    }


def test_write_shards_dedups_drops_and_sorts(tmp_path: Path):
    layout = ShardLayout({"train/nli": 2})
    spill = SpillWriter(str(tmp_path / "spill" / "a.arrow"), layout, "rte", "train", flush_rows=3)
    for i in range(12):
        spill.add(record("rte", f"e{i}", "t1", f"text {i % 8}"), sample_key=i)  # 4 copies within the task
    spill.add(record("anli", "e0", "t1", "text 0"))  # anli < rte: wins text 0
    spill.add(record("anli", "e1", "t1", "lost to another cluster"))
    refs, _ = spill.close()
    winners = [(("train", content_hash("lost to another cluster", "yes")), "sentiment")]
    # Within the task the smallest example id wins ("e10" < "e2"); then rte's t1 keeps keys up to 5
    # (the hash breaks ties): of the survivors e1, e4, e5 stay and e6, e7, e10, e11 are capped.
    thresholds = [(("rte", "train", "t1"), (5, "f" * 32))]
    out = tmp_path / "out"
    with TestPipeline() as p:
        written = (
            p | "Refs" >> beam.Create(refs),
            p | "Winners" >> beam.Create(winners),
            p | "Thresholds" >> beam.Create(thresholds),
            p | "Removed" >> beam.Create([]),
        ) | WriteShards(str(out), ("parquet", "tfrecord"), layout)
        assert_that(written["shards"] | beam.Map(lambda s: s["path"]), equal_to([
            f"{fmt}/train/nli/part-0000{i}-of-00002.{fmt}" for fmt in ("parquet", "tfrecord") for i in (0, 1)
        ]), label="files")
        counts = written[COUNTS] | beam.CombinePerKey(sum) | beam.Filter(lambda kv: "@" not in kv[0][1])
        assert_that(counts, equal_to([
            (("anli", "written"), 1), (("anli", "duplicates"), 1), (("rte", "duplicates"), 5), (("rte", "capped"), 4), (("rte", "written"), 3),
        ]), label="counts")
    rows = [r for f in sorted((out / "parquet").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert sorted((r["task"], r["example_id"]) for r in rows) == [("anli", "e0"), ("rte", "e1"), ("rte", "e4"), ("rte", "e5")]
    for f in (out / "parquet").rglob("*.parquet"):
        hashes = pq.read_table(f).column("content_hash").to_pylist()
        assert hashes == sorted(hashes)


def test_layout_grows_with_the_input_and_the_cap_bounds_it(tmp_path: Path, templates_dir: Path):
    spec = load_catalog(templates_dir).tasks["rte"]
    compiled = CompiledTask(spec)
    profile = profile_task(compiled, mode=TemplateMode.parse("all"), options_variants="template", few_shot=0)
    assert profile.train_applications == compiled.n_templates and profile.record_bytes > 120

    def layout(rows: int, cap: int | None) -> int:
        path = tmp_path / f"rte{rows}.jsonl"
        path.write_text("".join(json.dumps(dict(spec.samples[0], idx=i)) + "\n" for i in range(rows)))
        shards = {"rte": plan_reads(spec, demo=False, overrides={"train": str(path)})}
        return plan_layout([compiled], shards, {"rte": profile}, target_shard_bytes=100_000, caps={} if cap is None else {"rte": cap}).count("train", "nli")

    small, large = layout(100, None), layout(2000, None)
    assert small < large and large >= 10
    assert layout(2000, 50) == 1  # a cap bounds what can be written, so the shard count too
    assert layout(2000, None) == large  # a pure function of the plan
