"""Regression: uncapped builds publish the same bytes as before the data-plane redesign.

golden_shards.json holds the sha256 of every shard and dead-letter file of four demo builds (the
whole bundled catalog; a held-out cluster with options variants and few-shot; round-robin; k-of-n
sampling) as the previous data plane (one Beam element per row, two shuffles) wrote them. A change
to rendering, dedup, shard assignment or encoding shows up here as a changed digest. The paths
were recorded in the old hive-style layout (`parquet/split=S/cluster=C/...`); the folders are now
plain `parquet/S/C/...`, so the recorded paths are translated, and only the folder names differ.
Clusters added to the catalog since (cot, niv2) add files of their own; the recorded clusters'
files must be unchanged, byte for byte.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.manifest import read_manifest

GOLDEN = json.loads((Path(__file__).parent / "golden_shards.json").read_text())
NEW_CLUSTERS = {"cot", "niv2"}  # added to the catalog after the digests were recorded


def current_layout(recorded: dict[str, str]) -> dict[str, str]:
    return {re.sub(r"/split=([^/]+)/cluster=([^/]+)/", r"/\1/\2/", path): digest for path, digest in recorded.items()}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_uncapped_build_is_byte_identical_to_the_recorded_one(tmp_path, name):
    out = tmp_path / name
    assert run_build_cli([*GOLDEN[name]["args"], "--output", str(out), "--no-progress"], io.StringIO()) == 0
    manifest = read_manifest(str(out))
    recorded = current_layout(GOLDEN[name]["shards"])
    recorded_clusters = {path.split("/")[2] for path in recorded}
    assert {s.path: s.sha256 for s in manifest.shards if s.cluster in recorded_clusters} == recorded
    assert {s.cluster for s in manifest.shards} - recorded_clusters <= NEW_CLUSTERS
    assert {d.path: d.sha256 for d in manifest.dead_letters} == GOLDEN[name]["dead_letters"]
