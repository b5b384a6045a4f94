"""Regression: uncapped builds publish the same bytes as when the digests were recorded.

golden_shards.json holds the sha256 of every shard and dead-letter file of four demo builds (the
whole bundled catalog; a held-out cluster with options variants and few-shot; round-robin; k-of-n
sampling). A change to rendering, dedup, shard assignment or encoding shows up here as a changed
digest. The digests were first written by the previous data plane (one Beam element per row, two
shuffles) and the current one reproduced them byte for byte; they were re-recorded, with the same
args, when the record gained its `collection` field (every shard's bytes change with a field), and
now cover every cluster of the catalog, cot and niv2 included.

A deliberate change to the record or to rendering is re-recorded with
`.venv/bin/python tests/beam_pipelines/test_golden.py --record` (it keeps each build's args).
"""
from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.manifest import read_manifest

GOLDEN_PATH = Path(__file__).parent / "golden_shards.json"
GOLDEN = json.loads(GOLDEN_PATH.read_text())


def digests(args: list[str], out: Path) -> dict[str, Any]:
    """Build `args` into `out`; the sha256 of every shard and dead-letter file, by path."""
    assert run_build_cli([*args, "--output", str(out), "--no-progress"], io.StringIO()) == 0
    manifest = read_manifest(str(out))
    return {
        "args": args,
        "dead_letters": {d.path: d.sha256 for d in manifest.dead_letters},
        "shards": {s.path: s.sha256 for s in manifest.shards},
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_uncapped_build_is_byte_identical_to_the_recorded_one(tmp_path, name):
    assert digests(GOLDEN[name]["args"], tmp_path / name) == GOLDEN[name]


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    with tempfile.TemporaryDirectory() as scratch:
        recorded = {name: digests(entry["args"], Path(scratch) / name) for name, entry in sorted(GOLDEN.items())}
    GOLDEN_PATH.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"recorded {sum(len(r['shards']) for r in recorded.values())} shard digests in {GOLDEN_PATH}")
