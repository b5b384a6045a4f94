"""Whole builds on real files: a header-less file fails loudly unless the source says how to read
it; a user's own specs (an overlay on the bundled catalog) with a line-aligned source, a
free-text template and a per-template filter build with every application accounted for."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from realdata import REALDATA, esnli_spec

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.schemas.manifest import accounting_errors, read_manifest

QQP_COLUMNS = "id|qid1|qid2|question1|question2|is_duplicate"


def build(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_build_cli([*args, "--no-progress"], out, err)
    return code, out.getvalue(), err.getvalue()


def header_less_qqp(tmp_path: Path) -> Path:
    lines = (REALDATA / "glue_qqp" / "train.tsv").read_bytes().splitlines(keepends=True)
    path = tmp_path / "quora.tsv"
    path.write_bytes(b"".join(lines[1:]))
    return path


def test_header_less_file_read_as_headed_fails_the_build_with_a_summary(tmp_path):
    data, out = header_less_qqp(tmp_path), tmp_path / "out"
    code, _, err = build("--output", str(out), "--source", f"qqp={data}")
    assert code == 1
    assert not (out / "manifest.json").exists()  # nothing published
    assert "qqp: 80 of 80 template applications failed (100.0%)" in err
    # the first reasons name the file and line, say what the row has instead, and quote it
    assert re.search(r"render train train:quora.tsv:\d+: field question1: source row has no 'question1'", err)
    assert "the row has '133273', '213221'" in err
    assert "Traceback" not in err


def test_header_less_file_with_header_false_reads_every_row(tmp_path):
    data, out = header_less_qqp(tmp_path), tmp_path / "out"
    source = f"qqp={data}#header=false,columns={QQP_COLUMNS.replace('is_duplicate', 'label')},types=label:int"
    code, summary, err = build("--output", str(out), "--source", source)
    assert code == 0, err
    m = read_manifest(str(out))
    assert m.tasks["qqp"].counts["read"] == 9 and m.tasks["qqp"].counts["failed"] == 0
    assert m.tasks["qqp"].counts["written"] == 9 * 10


def test_unreadable_share_over_the_threshold_fails_and_under_it_passes(tmp_path):
    data = tmp_path / "rte.jsonl"
    rows = [json.dumps({"premise": f"P {i}.", "hypothesis": f"H {i}.", "label": i % 2, "idx": i}) for i in range(50)]
    data.write_text("\n".join(rows[:25] + ["{broken"] + rows[25:]) + "\n")  # 1 of 51 records: 2%
    code, _, err = build("--output", str(tmp_path / "a"), "--source", f"rte={data}")
    assert code == 1 and "rte: 1 of 51 records unreadable (2.0%)" in err and "rte.jsonl byte " in err and "| {broken" in err
    code, _, err = build("--output", str(tmp_path / "b"), "--source", f"rte={data}", "--max-error-rate", "0.05")
    assert code == 0, err
    assert read_manifest(str(tmp_path / "b")).tasks["rte"].counts["read_errors"] == 1


def test_a_task_that_reads_no_rows_fails_the_build(tmp_path):
    data = tmp_path / "rte.jsonl"
    data.write_text('"a"\n"b"\n')  # well-formed JSON, but no objects
    code, _, err = build("--output", str(tmp_path / "out"), "--source", f"rte={data}", "--max-error-rate", "1")
    assert code == 1 and "rte: read no rows (2 unreadable)" in err


def test_overlay_specs_build_with_free_text_and_filtered_templates(tmp_path):
    own = tmp_path / "my_specs"
    (own / "nli").mkdir(parents=True)
    esnli = REALDATA / "esnli"
    (own / "nli" / "esnli.yaml").write_text(esnli_spec("train"))
    catalog = load_catalog(own)
    assert {"esnli", "rte", "sst2"} <= set(catalog.tasks)  # the bundled catalog plus the user's spec
    out = tmp_path / "out"
    code, _, err = build("--output", str(out), "--templates", str(own), "--tasks", "esnli")
    assert code == 0, err
    m = read_manifest(str(out))
    counts = m.tasks["esnli"].counts
    labels = (esnli / "labels.test").read_text().split()
    entailed = labels.count("entailment")
    assert counts["read"] == 40 and counts["template_applications"] == 3 * 40
    assert counts["skipped"] == 40 - entailed  # esnli_03 applies to entailed pairs only
    assert not accounting_errors(m.tasks)
    table = pq.read_table(out / "parquet", columns=["template_id", "template_type", "targets", "options"], partitioning=None).to_pylist()
    by_template = {t: [r for r in table if r["template_id"] == t] for t in ("esnli_01", "esnli_02", "esnli_03")}
    assert {r["template_type"] for r in by_template["esnli_02"]} == {"free_text"}
    assert all(r["options"] == [] for r in by_template["esnli_02"])
    assert "not all churches have cracks in the ceiling" in {r["targets"] for r in by_template["esnli_02"]}
    # Moses/PTB tokens undone by the detokenize filter: no `` quotes left in any explanation
    assert not any("``" in r["targets"] for r in by_template["esnli_02"])
    assert 0 < len(by_template["esnli_03"]) <= entailed
