"""The trainer's data path reads a corpus published to (emulated) Cloud Storage: manifest,
shard checks and Parquet shards all through pyarrow's GCS filesystem, no Beam involved."""
from __future__ import annotations

import io

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.training.data import open_corpus, read_output_shard, train_shards, verify_shard_files


def test_trainer_reads_a_gcs_corpus(gcs_emulator, templates_dir):
    root = f"gs://{gcs_emulator.new_bucket()}/corpus"
    out = io.StringIO()
    assert run_build_cli(["--demo", "--templates", str(templates_dir), "--output", root], out) == 0, out.getvalue()

    manifest = open_corpus(root, "parquet")
    shards = train_shards(manifest, "parquet", holdout=[])
    verify_shard_files(manifest, shards, check_sha256=True)
    rows = [r for s in shards for r in read_output_shard(manifest, s, ["inputs", "targets", "task"]).to_pylist()]
    assert len(rows) == sum(t.written_by_split.get("train", 0) for t in manifest.tasks.values()) > 0
    assert {r["task"] for r in rows} == {"rte", "echo_title"} and all(r["inputs"] for r in rows)
