import json
import subprocess
import sys
from pathlib import Path

import yaml

from flanforge.beam_pipelines.cli import main


def test_validate_ok(templates_dir, capsys):
    assert main(["validate", "--templates", str(templates_dir)]) == 0
    assert "ok: 2 tasks in 2 clusters" in capsys.readouterr().out


def test_validate_reports_one_line_per_problem(templates_dir, capsys):
    path = templates_dir / "nli" / "rte.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["templates"][0]["inputs"] = "{{ premise }} {{ hypotesis }}"
    spec["templates"][1]["targets"] = "{% if %}"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", "--templates", str(templates_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("rte.yaml: template rte_02 field targets: line 1:" in line for line in lines)
    assert lines[-1] == "1 problem(s)"
    spec["templates"][1]["targets"] = "{{ answer }}"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", "--templates", str(templates_dir)]) == 1
    out = capsys.readouterr().out
    assert "rte.yaml: sample #1: template rte_01 field inputs: UndefinedError: 'hypotesis' is undefined" in out


def test_preview_shows_inputs_targets_and_options(templates_dir, capsys):
    assert main(["preview", "rte", "-n", "1", "--template", "rte_02", "--templates", str(templates_dir)]) == 0
    out = capsys.readouterr().out
    assert "template rte_02 · zero_shot" in out and "OPTIONS:\n- yes\n- no" in out and "--- targets\nno" in out
    assert main(["preview", "nope", "--templates", str(templates_dir)]) == 2


def test_preview_says_where_a_templates_own_filter_skips_a_row_as_the_build_does(capsys):
    # qrecc_10 rewrites a follow-up question: the first sample is an opening question, which it skips
    assert main(["preview", "qrecc", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "template qrecc_10 · skipped: the template's filter leaves this row out" in out
    assert "template qrecc_01 · zero_shot" in out


def test_preview_renders_a_files_first_rows_for_a_task_without_samples(capsys):
    """An imported promptsource task has no sample rows: preview says how to show it, and does on a file's rows."""
    data = Path(__file__).resolve().parents[1] / "data" / "promptsource"
    args = ["preview", "p3_super_glue_rte", "--templates", str(data / "templates"), "-n", "2", "--template", "can_we_infer"]
    assert main(args) == 0
    assert "has no sample rows" in capsys.readouterr().out
    rows = data / "rows" / "super_glue_rte.jsonl"
    assert main([*args, "--source", str(rows)]) == 0
    out = capsys.readouterr().out
    first = json.loads(rows.read_text().splitlines()[0])
    assert out.count("=== row #") == 2 and "=== row #1 · template can_we_infer · zero_shot" in out
    assert f'{first["premise"]} Can we infer that "{first["hypothesis"]}"? Yes or no?' in out
    assert main([*args, "--source", str(data / "missing.jsonl")]) == 2
    assert "missing.jsonl' matched no files" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "flanforge.beam_pipelines.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "flanforge build --demo" in result.stdout


def test_validate_flags_identical_templates_and_fake_inversions(templates_dir, capsys):
    path = templates_dir / "nli" / "rte.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["templates"][1]["inputs"] = spec["templates"][0]["inputs"]
    spec["templates"][8]["targets"] = "{{ answer }}"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", "--templates", str(templates_dir)]) == 1
    out = capsys.readouterr().out
    assert "template rte_02 renders the same inputs and targets as template rte_01" in out
    assert "template rte_09 is marked inverted but its target 'no' is an answer option" in out


def test_docs_catalog_is_up_to_date():
    from pathlib import Path

    from flanforge.beam_pipelines.catalog import load_catalog
    from flanforge.beam_pipelines.catalog_doc import catalog_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "CATALOG.md"
    assert doc.read_text(encoding="utf-8") == catalog_markdown(load_catalog()), "run: flanforge catalog --write docs/CATALOG.md"


def test_catalog_table_lists_every_task(templates_dir, capsys):
    assert main(["catalog", "--templates", str(templates_dir)]) == 0
    out = capsys.readouterr().out
    assert "| rte | nli | `aps/super_glue / rte` | super_glue/rte | 10 | 2 | yes: yes, no | accuracy |" in out
    assert "| echo_title | summarization | `jsonl files` |  | 3 | 1 | no | rouge |" in out


def test_preview_piped_into_a_reader_that_stops_early_ends_quietly():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "from flanforge.beam_pipelines.cli import main; import sys; sys.exit(main(['preview', 'rte', '-n', '7']))"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # like `| head` that has already exited: every write finds the pipe closed
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()[-2000:]
    assert proc.returncode == 1
