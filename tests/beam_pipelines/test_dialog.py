"""The dialog collection's specs on a real Taskmaster-1 conversation (tests/data/dialog, see its
README): which turn becomes the target, what the inputs show, and a build that accounts for it."""
from __future__ import annotations

import io
import json
from pathlib import Path

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.render import CompiledTask
from flanforge.schemas.manifest import accounting_errors, read_manifest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "dialog" / "taskmaster1_sample.jsonl"


def test_a_real_taskmaster_conversation_is_cut_at_the_first_assistant_turn_of_its_second_half():
    spec = load_catalog().tasks["taskmaster1"]
    assert spec.collection == "dialog" and spec.cluster == "dialog"
    row = json.loads(SAMPLE.read_text())
    task = CompiledTask(spec)
    variables = task.prepare(row)
    assert variables is not None and variables["task"] == "reserving a restaurant table"
    # 20 turns: the second half starts at turn 10 (USER "Let me check."), the reply is turn 11
    assert (variables["target"], variables["reply"], variables["request"]) == (11, "Ok.", "Let me check.")
    rendered = {t.id: task.render(variables, i) for i, t in enumerate(spec.templates) if task.applies(variables, i)}
    first = rendered["taskmaster1_01"]
    assert first.inputs.startswith("User: Hi, I'm looking to book a table for Korean food.\nAssistant: Ok, what area")
    assert first.inputs.endswith("User: Let me check.\nAssistant:") and first.targets == "Ok."
    assert "Lets try Boka" not in first.inputs  # nothing after the reply leaks into the prompt
    inverted = [r for r in rendered.values() if r.template_type == "inverted"]
    assert inverted and all("Let me check." in r.targets or "Hi, I'm looking" in r.targets for r in inverted)


def test_the_real_conversation_builds_with_balanced_accounting(tmp_path):
    out = tmp_path / "out"
    err = io.StringIO()
    code = run_build_cli(["--output", str(out), "--tasks", "taskmaster1", "--source", f"taskmaster1={SAMPLE}", "--no-progress"], io.StringIO(), err)
    assert code == 0, err.getvalue()
    m = read_manifest(str(out))
    assert accounting_errors(m.tasks) == []
    entry = m.tasks["taskmaster1"]
    assert entry.collection == "dialog" and entry.counts["read"] == 1 and entry.counts["written"] >= 8
