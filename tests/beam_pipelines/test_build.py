"""End-to-end builds through the real CLI entry point and the DirectRunner."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.schemas.manifest import COUNTERS, accounting_errors, read_manifest, verify_shards
from flanforge.schemas.records import FIELD_NAMES


def build(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return run_build_cli(list(args), out), out.getvalue()


def write_rte_rows(path: Path, n: int, *, broken_line_at: int | None = None) -> None:
    lines = []
    for i in range(n):
        if i == broken_line_at:
            lines.append("{this is not json")
        # every 10th row repeats an earlier one, so dedup has work to do
        j = i - 5 if i % 10 == 9 else i
        lines.append(json.dumps({"premise": f"Premise number {j} is here.", "hypothesis": f"Claim {j % 7}.", "label": j % 2, "idx": i}))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def rte_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "rte_train.jsonl"
    write_rte_rows(path, 120)
    return path


def test_demo_build_is_readable_by_tf_pyarrow_and_datasets(tmp_path, templates_dir):
    out = tmp_path / "out"
    code, summary = build("--demo", "--output", str(out), "--templates", str(templates_dir))
    assert code == 0, summary
    assert f"manifest: {out}/manifest.json" in summary
    m = read_manifest(str(out))
    verify_shards(m, m.shards, check_sha256=True)
    assert accounting_errors(m.tasks) == []
    written = sum(t.counts["written"] for t in m.tasks.values())
    assert m.tasks["rte"].counts["filtered"] == 1 and written > 0

    import pyarrow.dataset as ds

    table = ds.dataset(str(out / "parquet"), format="parquet").to_table()
    assert table.num_rows == written and set(FIELD_NAMES) <= set(table.column_names)
    assert set(table.column("cluster").to_pylist()) == {"nli", "summarization"}

    import datasets

    hf = datasets.load_dataset("parquet", data_files=str(out / "parquet/train/*/*.parquet"), split="train")
    assert len(hf) == written and hf[0]["inputs"]

    import tensorflow as tf

    from flanforge.schemas.records import tf_feature_spec

    files = sorted(str(p) for p in out.glob("tfrecord/train/*/*.tfrecord"))
    parsed = [tf.io.parse_single_example(x, tf_feature_spec()) for x in tf.data.TFRecordDataset(files)]
    assert len(parsed) == written
    by_hash = {r["content_hash"]: r for r in table.to_pylist()}
    for ex in parsed[:20]:
        row = by_hash[ex["content_hash"].numpy().decode()]
        assert ex["inputs"].numpy().decode() == row["inputs"] and ex["targets"].numpy().decode() == row["targets"]
        assert [o.decode() for o in tf.sparse.to_dense(ex["options"]).numpy()] == row["options"]
        assert int(ex["answer_index"]) == row["answer_index"]


def sha_by_path(out: Path) -> dict[str, str]:
    return {s.path: s.sha256 for s in read_manifest(str(out)).shards}


def test_output_is_byte_identical_in_process_and_with_two_worker_processes(tmp_path, templates_dir, rte_jsonl):
    common = ["--templates", str(templates_dir), "--source", f"rte={rte_jsonl}", "--target-shard-bytes", "20000", "--max-examples-per-task", "600"]
    assert build("--output", str(tmp_path / "a"), *common)[0] == 0
    assert build("--output", str(tmp_path / "b"), *common, "--direct_running_mode=multi_processing", "--direct_num_workers=2")[0] == 0
    a, b = sha_by_path(tmp_path / "a"), sha_by_path(tmp_path / "b")
    assert len(a) > 4 and a == b  # several shards per format, same bytes
    ma, mb = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert ma["tasks"] == mb["tasks"] and ma["tasks"]["rte"]["counts"]["capped"] > 0


def test_every_row_is_accounted_for_with_bad_rows_and_templates(tmp_path, templates_dir):
    import yaml

    spec_path = templates_dir / "nli" / "rte.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["templates"][2]["inputs"] = "{{ premise }} {{ source_url }}"  # compiles, fails on every row
    spec_path.write_text(yaml.safe_dump(spec))
    data = tmp_path / "rte.jsonl"
    write_rte_rows(data, 40, broken_line_at=3)
    out = tmp_path / "out"
    code, summary = build("--output", str(out), "--templates", str(templates_dir), "--source", f"rte={data}", "--max-error-rate", "1")
    assert code == 0, summary
    m = read_manifest(str(out))
    c = m.tasks["rte"].counts
    assert c["read"] == 40 and c["read_errors"] == 1
    assert c["template_applications"] == 400 and c["failed"] == 40 and c["duplicates"] > 0
    assert c["template_applications"] == c["written"] + c["duplicates"] + c["capped"] + c["failed"]
    letters = [json.loads(line) for line in (out / "dead_letters" / "rte.jsonl").read_text().splitlines()]
    assert sum(1 for d in letters if d["stage"] == "read" and "malformed JSON" in d["error"]) == 1
    render = [d for d in letters if d["stage"] == "render"]
    assert len(render) == 40 and all("template rte_03 field inputs" in d["error"] and "source_url" in d["error"] for d in render)
    assert m.dead_letters[0].rows == 41


def test_rerun_clears_what_a_crashed_build_left_in_staging(tmp_path, templates_dir):
    out = tmp_path / "out"
    stale = out / ".flanforge_staging" / "parquet" / "train" / "nli" / "part-00007-of-00009.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a crashed build")
    assert build("--demo", "--output", str(out), "--templates", str(templates_dir), "--tasks", "rte")[0] == 0
    assert not (out / ".flanforge_staging").exists()
    listed = {s.path for s in read_manifest(str(out)).shards}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("part-*")}
    assert listed == on_disk


def test_round_robin_and_sample_modes(tmp_path, templates_dir, rte_jsonl):
    for mode, per_row in (("round_robin", 1), ("sample:3", 3)):
        out = tmp_path / mode.replace(":", "_")
        assert build("--output", str(out), "--templates", str(templates_dir), "--source", f"rte={rte_jsonl}", "--template-mode", mode)[0] == 0
        m = read_manifest(str(out))
        assert m.tasks["rte"].counts["template_applications"] == 120 * per_row


def test_bad_invocations_fail_with_one_clear_line(tmp_path, templates_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = [
        (["--output", str(tmp_path / "o"), "--templates", str(templates_dir), "--source", f"rte={empty}"], "is empty"),
        (["--output", str(tmp_path / "o"), "--templates", str(templates_dir), "--source", "nope=x.jsonl"], "unknown task(s): nope"),
        (["--output", str(tmp_path / "o"), "--templates", str(templates_dir), "--demo", "--formats", "csv"], "--formats csv"),
        (["--demo", "--templates", str(templates_dir)], "--output is required"),
        (["--output", str(tmp_path / "o"), "--demo", "--colour", "blue"], "unrecognized arguments: --colour blue"),
    ]
    for argv, message in cases:
        assert build(*argv)[0] == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_help_shows_our_flags_grouped_and_beams_under_help_beam():
    code, text = build("--help")
    assert code == 0 and len(text.splitlines()) < 150
    headings = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == [
        "Examples:", "options:", "what to build:", "how to render and sample:", "output:",
        "near-duplicates and contamination (docs/NEAR_DEDUP.md):", "console:",
    ]
    for flag in ("--template-mode", "--max-examples-per-task", "--source", "--max-error-rate", "--force", "--no-progress", "--help-beam"):
        assert flag in text
    assert "--s3_" not in text and "--direct_num_workers" in text  # named in the pointer to --help-beam only
    code, full = build("--help-beam")
    assert code == 0 and "--template-mode" in full
    for flag in ("--runner", "--direct_num_workers", "--project", "--temp_location"):
        assert flag in full


def test_manifest_counts_cover_every_counter(tmp_path, templates_dir):
    assert build("--demo", "--output", str(tmp_path / "o"), "--templates", str(templates_dir))[0] == 0
    data = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert set(data["totals"]) == set(COUNTERS)
    assert set(data["clusters"]) == {"nli", "summarization"}
    assert data["config"]["template_mode"] == "all"


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the progress line is drawn on it."""

    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminal_only_and_never_changes_the_output(tmp_path, templates_dir, monkeypatch, caplog):
    import logging

    from flanforge.beam_pipelines.progress import BUNDLE_LOGGER

    monkeypatch.delenv("CI", raising=False)
    bundle_logger = logging.getLogger(BUNDLE_LOGGER)
    level_before = bundle_logger.level
    common = ["--demo", "--templates", str(templates_dir)]
    runs = {}
    for name, extra in (("shown", []), ("hidden", ["--no-progress"])):
        out, err = io.StringIO(), Terminal()
        assert run_build_cli([*common, "--output", str(tmp_path / name), *extra], out, err) == 0
        runs[name] = (out.getvalue().replace(str(tmp_path / name), "OUT"), err.getvalue())
    assert sha_by_path(tmp_path / "shown") == sha_by_path(tmp_path / "hidden")
    assert runs["shown"][0] == runs["hidden"][0]  # the same summary on stdout
    progress = runs["shown"][1]
    assert any(f"{stage}:" in progress for stage in ("Render", "Deduplicate", "WriteShards", "WriteManifest"))
    demo_rows = sum(len(t.samples) for t in load_catalog(templates_dir).tasks.values())
    assert f"{demo_rows:,} rows read" in progress and "records rendered" in progress
    assert runs["hidden"][1] == ""
    # Watching Beam's bundle log adds no log output, and the logger is left as it was.
    assert not [r for r in caplog.records if r.name == BUNDLE_LOGGER]
    assert bundle_logger.level == level_before and not bundle_logger.filters


def test_progress_is_off_without_a_terminal_in_ci_or_when_asked():
    from flanforge.beam_pipelines.progress import progress_wanted

    assert progress_wanted(False, Terminal(), {})
    assert not progress_wanted(True, Terminal(), {})
    assert not progress_wanted(False, Terminal(), {"CI": "true"})
    assert not progress_wanted(False, io.StringIO(), {})


def test_progress_names_the_stage_a_fused_beam_stage_starts_in():
    from flanforge.beam_pipelines.progress import top_level_stage

    fused = "(((Deduplicate/GroupCopies/Read)+(ref_AppliedPTransform_Deduplicate-KeepOne-ParDo-_KeepOneFn-_43))+(ref_AppliedPTransform_WriteShards-SizeOf_51))"
    assert top_level_stage(fused) == "Deduplicate"
    assert top_level_stage("((ref_PCollection_PCollection_31/Read)+(ref_AppliedPTransform_WriteShards-KeyByShard_57))") == "WriteShards"


def test_summary_lists_the_largest_tasks_and_points_to_the_manifest_for_the_rest():
    from types import SimpleNamespace

    from flanforge.beam_pipelines.build import task_table

    def entry(written: int) -> SimpleNamespace:
        return SimpleNamespace(counts={c: written for c in COUNTERS})

    manifest = SimpleNamespace(tasks={"a": entry(5), "b": entry(50), "c": entry(7)}, uri=lambda name: f"gs://b/out/{name}")
    lines = task_table(manifest, limit=2)
    assert lines[0].split() == ["task", "read", "template_applications", "written", "duplicates", "capped", "failed"]
    assert [line.split()[:4] for line in lines[1:3]] == [["b", "50", "50", "50"], ["c", "7", "7", "7"]]
    assert lines[3] == "... and 1 more tasks (every task's counts: gs://b/out/manifest.json)"
    assert len(task_table(manifest)) == 4  # all three fit: no "more" line


def test_help_lists_the_progress_switch():
    code, text = build("--help")
    assert code == 0 and "--no-progress" in text


def test_multi_process_workers_are_not_handed_our_flags(tmp_path):
    """Our flags live in BuildConfig; a worker process handed them would log them as unparseable."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--demo", "--tasks", "rte", "--output", str(tmp_path / "o"),
               "--no-progress", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    discarded = [line for line in done.stderr.splitlines() if "Discarding unparseable args" in line]
    assert not any(flag in line for line in discarded for flag in ("--demo", "--output", "--tasks", "--no_progress", "build"))


def test_progress_counts_rows_and_input_with_a_rate_and_an_eta(tmp_path, monkeypatch):
    from flanforge.beam_pipelines.progress import progress_totals, report_shard

    report_shard(str(tmp_path), "a", 1000, 10, 100)
    report_shard(str(tmp_path), "b", 500, 5, 50)
    report_shard(str(tmp_path), "a", 1000, 10, 100)  # a retried bundle reports the same shard again: counted once
    assert progress_totals(str(tmp_path)) == {"bytes": 1500, "rows": 15, "records": 150, "shards": 2}
    monkeypatch.delenv("CI", raising=False)
    data = tmp_path / "rte.jsonl"
    data.write_text("".join(json.dumps({"premise": f"P {i}.", "hypothesis": "H.", "label": i % 2, "idx": i}) + "\n" for i in range(300)))
    err = Terminal()
    assert run_build_cli(["--output", str(tmp_path / "out"), "--source", f"rte={data}"], io.StringIO(), err) == 0
    line = err.getvalue()
    assert "100% of the input read" in line and "300 rows read, 3,000 records rendered" in line and "ETA" in line


def test_multi_process_workers_start_up_noise_is_dropped_and_other_warnings_kept():
    import logging

    from flanforge.beam_pipelines.build import _WORKER_NOISE

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("apache_beam.runners.portability.local_job_service", logging.WARNING, __file__, 1, message, None, None)

    relayed = 'Worker: severity: WARN message: "Discarding unparseable args: [\\\'--pipeline_type_check\\\', \\\'--direct_runner_use_stacked_bundle\\\']"'
    assert not _WORKER_NOISE.filter(record(relayed))
    assert not _WORKER_NOISE.filter(record('Worker: severity: WARN message: "No semi_persistent_directory found: ..."'))
    assert _WORKER_NOISE.filter(record('Worker: severity: WARN message: "Discarding unparseable args: [\\\'--my_flag\\\']"'))
    assert _WORKER_NOISE.filter(record("Worker: severity: ERROR message: something real"))
