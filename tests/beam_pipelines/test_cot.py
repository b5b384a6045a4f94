"""Chain-of-thought templates (`cot: true`): the target is the rationale and then the answer
sentence (`cot_answer_phrase`, default "So the answer is {{ answer }}."), on real AQuA-RAT rows
(tests/data/cot/aqua_rat) and real e-SNLI lines (tests/data/realdata/esnli); zero-shot and
few-shot forms; spec errors; and a whole build of both bundled CoT specs."""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import SpecError, load_catalog, parse_task_spec
from flanforge.beam_pipelines.render import Application, CompiledTask, RenderError, plan_applications, render_few_shot
from flanforge.schemas.manifest import accounting_errors, read_manifest
from flanforge.schemas.records import NO_ANSWER, TEMPLATE_TYPES
from flanforge.templates import TEMPLATES_DIR

TESTS_DATA = Path(__file__).resolve().parents[1] / "data"
AQUA = TESTS_DATA / "cot" / "aqua_rat" / "dev.jsonl"
ESNLI = TESTS_DATA / "realdata" / "esnli"
AQUA_ROWS = [json.loads(line) for line in AQUA.read_text(encoding="utf-8").splitlines()]
FIRST_RATIONALE = (
    "To calculate the equivalent of miles in a kilometer\n0.6 kilometers = 1 mile\n900 kilometers = (0.6)*900 = 540 miles\n"
    "In 1 hour there are 60 minutes\nSpeed in miles/minutes = 60 * 540 = 32400\nCorrect answer - A"
)


def spec_data(task: str) -> dict:
    return yaml.safe_load((TEMPLATES_DIR / "cot" / f"{task}.yaml").read_text(encoding="utf-8"))


def esnli_row(line: int) -> dict:
    files = {"premise": "s1.test", "hypothesis": "s2.test", "label": "labels.test", "explanation": "preproc1_expl_1.test"}
    return {field: (ESNLI / name).read_text(encoding="utf-8").split("\n")[line] for field, name in files.items()}


def render(spec, row: dict, template_id: str, show_options: bool | None = None):
    task = CompiledTask(spec)
    return task.render(task.prepare(row), spec.template_ids.index(template_id), show_options)


def test_default_phrase_follows_a_multi_line_rationale_on_its_own_line():
    spec = load_catalog().tasks["aqua_rat"]
    r = render(spec, AQUA_ROWS[0], "aqua_rat_01")
    assert r.targets == FIRST_RATIONALE + "\nSo the answer is (A) 32400."
    assert r.inputs == (
        "Work through this problem step by step, then pick the right choice.\n\n"
        "Three birds are flying at a fast rate of 900 kilometers per hour. What is their speed in miles per minute? [1km = 0.6 miles]\n\n"
        "OPTIONS:\n- (A) 32400\n- (B) 6000\n- (C) 600\n- (D) 60000\n- (E) 10"
    )
    # the target is not an option, so the record carries none (it is generative, not rank-classified)
    assert (r.template_type, r.options, r.answer_index) == ("cot", (), NO_ANSWER)
    assert "cot" in TEMPLATE_TYPES and "few_shot_cot" in TEMPLATE_TYPES
    r = render(spec, AQUA_ROWS[1], "aqua_rat_02")  # show_options: false: the template lists the choices itself
    assert "OPTIONS:" not in r.inputs and "Choices: (A) 100 m  (B) 150 m" in r.inputs
    assert r.targets.endswith("x = 250 m. Answer D\nSo the answer is (D) 250 m.")


def test_default_phrase_follows_a_one_line_rationale_after_a_space():
    spec = load_catalog().tasks["esnli"]
    r = render(spec, esnli_row(0), "esnli_01")
    assert r.targets == "Not all churches have cracks in the ceiling. So the answer is it is not possible to tell."
    assert r.inputs == (
        "Premise: This church choir sings to the masses as they sing joyous songs from the book at a church.\n"
        "Hypothesis: The church has cracks in the ceiling.\n"
        "Does the premise entail the hypothesis? Let's think step by step.\n\n"
        "OPTIONS:\n- yes\n- it is not possible to tell\n- no"
    )
    assert render(spec, esnli_row(4), "esnli_07").targets == "A grin suggests hapiness. So the answer is yes."


def test_a_configured_phrase():
    data = spec_data("aqua_rat")
    data["cot_answer_phrase"] = "Therefore the correct choice is {{ correct }} ({{ answer_index + 1 }} of {{ options | length }})."
    spec = parse_task_spec(data, "aqua_rat.yaml")
    r = render(spec, AQUA_ROWS[0], "aqua_rat_05")
    assert r.targets == FIRST_RATIONALE + "\nTherefore the correct choice is A (1 of 5)."


def test_phrase_and_template_errors_name_the_field():
    data = spec_data("esnli")
    data["cot_answer_phrase"] = "So {{ answer"
    with pytest.raises(SpecError, match=r"esnli.yaml: field cot_answer_phrase: unexpected end of template"):
        CompiledTask(parse_task_spec(data, "esnli.yaml"))
    data["cot_answer_phrase"] = "So the answer is {{ verdict }}."
    task = CompiledTask(parse_task_spec(data, "esnli.yaml"))
    with pytest.raises(RenderError, match=r"template esnli_01 field cot_answer_phrase: .*'verdict' is undefined"):
        task.render(task.prepare(esnli_row(0)), 0)
    bad = copy.deepcopy(spec_data("esnli"))
    bad["templates"][2]["inverted"] = True
    with pytest.raises(SpecError, match=r"template esnli_03 field cot: a chain-of-thought template cannot also be inverted or free_text"):
        parse_task_spec(bad, "esnli.yaml")
    bad = spec_data("esnli")
    bad["templates"][0]["cot"] = "yes"
    with pytest.raises(SpecError, match=r"template esnli_01 field cot: 'yes' is not of type 'boolean'"):
        parse_task_spec(bad, "esnli.yaml")


def test_an_empty_rationale_fails_the_application():
    spec = load_catalog().tasks["esnli"]
    row = {**esnli_row(0), "explanation": "  "}
    with pytest.raises(RenderError, match="template esnli_01 field targets: rendered empty"):
        render(spec, row, "esnli_01")


def test_cot_templates_get_no_options_variant_and_a_few_shot_form():
    spec = load_catalog().tasks["esnli"]
    task = CompiledTask(spec)
    apps = plan_applications(task, [0, 4], options_variants="both", evaluation=False, few_shot=True)
    assert apps == [Application(0), Application(4), Application(0, few_shot=True), Application(4, few_shot=True)]
    exemplars = [esnli_row(1), esnli_row(2)]
    r = render_few_shot(task, task.prepare(esnli_row(0)), apps[2], exemplars, 2, "\n\n")
    assert r.template_type == "few_shot_cot"
    assert r.inputs.count("Let's think step by step.") == 3
    assert '"filled with song" is a rephrasing of the "choir sings to the masses." So the answer is yes.\n\n' in r.inputs
    assert "So the answer is no.\n\nPremise: This church choir" in r.inputs
    assert r.targets == "Not all churches have cracks in the ceiling. So the answer is it is not possible to tell."


def test_the_bundled_cot_specs_build_local_files_with_balanced_accounting(tmp_path):
    """e-SNLI's spec reads release file names relative to the working directory: an overlay points
    it at the test excerpt (as its train split, so few-shot forms are made); AQuA reads a local
    JSONL copy through --source."""
    data = spec_data("esnli")
    data["source"]["splits"] = {"train": {field: str(ESNLI / Path(path).name) for field, path in data["source"]["splits"]["test"].items()}}
    own = tmp_path / "own" / "cot"
    own.mkdir(parents=True)
    (own / "esnli.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    out, err = tmp_path / "out", io.StringIO()
    args = ["--output", str(out), "--templates", str(own.parent), "--tasks", "esnli,aqua_rat", "--source", f"aqua_rat={AQUA}", "--few-shot", "2"]
    code = run_build_cli([*args, "--no-progress"], io.StringIO(), err)
    assert code == 0, err.getvalue()
    manifest = read_manifest(str(out))
    assert accounting_errors(manifest.tasks) == []
    esnli, aqua = manifest.tasks["esnli"].counts, manifest.tasks["aqua_rat"].counts
    assert esnli["read"] == 40 and esnli["failed"] == 0 and esnli["template_applications"] == 40 * 8 * 2
    assert aqua["read"] == 12 and aqua["failed"] == 0 and aqua["template_applications"] == 12 * 8 * 2
    table = pq.read_table(out / "parquet").to_pylist()
    assert {r["cluster"] for r in table} == {"cot"}
    assert {r["template_type"] for r in table} == {"cot", "few_shot_cot"}
    assert all(r["options"] == [] and r["answer_index"] == NO_ANSWER for r in table)
    first = [r for r in table if r["example_id"] == "train:train:1" and r["template_id"] == "esnli_01" and r["template_type"] == "cot"]
    assert [r["targets"] for r in first] == ["Not all churches have cracks in the ceiling. So the answer is it is not possible to tell."]
    assert all(r["targets"].endswith(("So the answer is yes.", "So the answer is no.", "So the answer is it is not possible to tell.")) for r in table if r["task"] == "esnli")
