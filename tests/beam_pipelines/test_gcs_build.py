"""A whole build whose templates, sources and output all live in (emulated) Cloud Storage.

The gs:// build must produce byte-identical shards to a local build of the same inputs: paths
never leak into ids or records, and reading or writing through GCS changes nothing.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gcs_files import upload_tree

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.files import open_filesystem
from flanforge.schemas.manifest import Manifest, read_manifest, verify_shards


def write_inputs(root: Path) -> Path:
    """Two JSONL files of rte rows (one malformed line, so dead letters travel too)."""
    (root / "rte").mkdir(parents=True)
    for part, offset in (("part-0", 0), ("part-1", 30)):
        rows = [json.dumps({"premise": f"Premise {offset + i}.", "hypothesis": f"Claim {(offset + i) % 7}.", "label": i % 2}) for i in range(30)]
        (root / "rte" / f"{part}.jsonl").write_text("\n".join(rows[:10] + ["{broken"] + rows[10:]) + "\n")
    return root


# The inputs hold two malformed lines of 62 on purpose (dead letters must match across storages).
DIRTY = ("--max-error-rate", "0.05")


def build(*args: str) -> Manifest:
    out = io.StringIO()
    code = run_build_cli([*args, *DIRTY], out)
    assert code == 0, out.getvalue()
    return read_manifest(args[args.index("--output") + 1])


def gcs_sha256(uri: str) -> str:
    fs, path = open_filesystem(uri)
    with fs.open_input_file(path) as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def gcs_inputs(gcs_emulator, tmp_path, templates_dir) -> tuple[str, Path]:
    """gs://<fresh bucket> holding templates/ and data/rte/*.jsonl; and the local data dir they came from."""
    bucket = f"gs://{gcs_emulator.new_bucket()}"
    data = write_inputs(tmp_path / "data")
    upload_tree(templates_dir, f"{bucket}/templates")
    upload_tree(data, f"{bucket}/data")
    return bucket, data


def test_gcs_build_equals_local_build(gcs_inputs, tmp_path, templates_dir):
    bucket, data = gcs_inputs
    local = build("--templates", str(templates_dir), "--source", f"rte={data}/rte/*.jsonl", "--output", str(tmp_path / "out"), "--tasks", "rte")
    remote = build("--templates", f"{bucket}/templates", "--source", f"rte={bucket}/data/rte/*.jsonl", "--output", f"{bucket}/out", "--tasks", "rte")

    assert remote.tasks["rte"].counts == local.tasks["rte"].counts
    assert remote.tasks["rte"].counts["read"] == 60 and remote.tasks["rte"].counts["read_errors"] == 2
    assert remote.shards == local.shards and len(remote.shards) > 0
    assert [(d.path, d.rows, d.sha256) for d in remote.dead_letters] == [(d.path, d.rows, d.sha256) for d in local.dead_letters]
    verify_shards(remote, remote.shards, check_sha256=True)
    # Read the bytes back through pyarrow's GCS client, independently of the manifest's own check.
    for shard in remote.shards:
        assert gcs_sha256(remote.uri(shard.path)) == hashlib.sha256((tmp_path / "out" / shard.path).read_bytes()).hexdigest()
    import pyarrow.parquet as pq

    rows = 0
    for shard in remote.shards_for(fmt="parquet"):
        fs, path = open_filesystem(remote.uri(shard.path))
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
        assert table.num_rows == shard.rows and set(table.column("task").to_pylist()) <= {"rte"}
        rows += table.num_rows
    assert rows == remote.tasks["rte"].counts["written"]


def test_flanforge_build_command_reaches_gcs_with_only_the_emulator_variable(gcs_inputs):
    """`flanforge build` (the console script's module) in a fresh process: no credentials, no project, just STORAGE_EMULATOR_HOST."""
    bucket, _ = gcs_inputs
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]}
    command = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--templates", f"{bucket}/templates",
               "--source", f"rte={bucket}/data/rte/*.jsonl", "--output", f"{bucket}/cli-out", "--tasks", "rte", *DIRTY]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"manifest: {bucket}/cli-out/manifest.json" in done.stdout
    manifest = read_manifest(f"{bucket}/cli-out")
    assert manifest.tasks["rte"].counts["read"] == 60
    verify_shards(manifest, manifest.shards, check_sha256=True)


def test_missing_gcs_source_stops_the_build_before_it_runs(gcs_inputs, capsys):
    bucket, _ = gcs_inputs
    code = run_build_cli(["--templates", f"{bucket}/templates", "--source", f"rte={bucket}/data/nothing/*.jsonl", "--output", f"{bucket}/out2", "--tasks", "rte"], io.StringIO())
    assert code == 2
    assert capsys.readouterr().err.strip() == f"flanforge build: task rte split train: source '{bucket}/data/nothing/*.jsonl' matched no files"
    fs, path = open_filesystem(f"{bucket}/out2")
    import pyarrow.fs as pafs

    assert fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)) == []
