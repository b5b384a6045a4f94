"""One bad record never aborts a build: records nested far beyond any parser's recursion, a row
too deep to quote in its dead letter, and an unreachable storage service, each checked with a
watchdog (a child process with a time limit) so a regression fails instead of hanging."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEEP_BUILD = """
import io, json, sys
from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.manifest import read_manifest
data, out = sys.argv[1], sys.argv[2]
code = run_build_cli(["--output", out, "--source", f"rte={data}", "--max-error-rate", "1", "--no-progress"], io.StringIO(), io.StringIO())
m = read_manifest(out)
letters = [json.loads(l) for l in open(out + "/dead_letters/rte.jsonl")]
print(json.dumps({"code": code, "counts": m.tasks["rte"].counts, "letters": letters}))
"""


def test_records_nested_thousands_deep_are_dead_letters_not_crashes(tmp_path: Path):
    rows = [json.dumps({"premise": f"P {i}.", "hypothesis": f"H {i}.", "label": i % 2, "idx": i}) for i in range(40)]
    deep_10k = '{"premise": ' + "[" * 10_000 + "]" * 10_000 + ', "hypothesis": "h", "label": 0}'
    deep_900_used = '{"premise": ' + "[" * 900 + "]" * 900 + ', "hypothesis": "h", "label": 0, "idx": 900}'
    data = tmp_path / "rte.jsonl"
    data.write_text("\n".join([*rows[:20], deep_10k, *rows[20:], deep_900_used]) + "\n")
    done = subprocess.run([sys.executable, "-c", DEEP_BUILD, str(data), str(tmp_path / "out")], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    counts = result["counts"]
    assert counts["read"] == 41 and counts["read_errors"] == 1
    read_letters = [d for d in result["letters"] if d["stage"] == "read"]
    assert len(read_letters) == 1 and "malformed JSON" in read_letters[0]["error"] and read_letters[0]["where"].startswith("rte.jsonl byte ")
    # the 900-deep premise renders as text through the templates or fails them: either way every application is accounted for
    assert counts["template_applications"] == counts["written"] + counts["duplicates"] + counts["capped"] + counts["failed"] + counts["skipped"]


def test_an_unreachable_storage_service_is_one_line_with_a_hint(tmp_path: Path):
    env = {**os.environ, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}  # nothing listens on the discard port
    command = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--demo", "--tasks", "rte", "--output", "gs://some-bucket/out", "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach Cloud Storage" in lines[0] and "retry" in lines[0], done.stderr[-3000:]
