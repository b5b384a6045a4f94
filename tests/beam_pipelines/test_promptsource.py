"""promptsource's templates on flanforge's engine: the importer, promptsource's render semantics
(the ||| split, answer_choices, skipped rows, truncation, zip / choice / most_frequent) and a real
build of an imported task. The expected strings are worked out by hand from the template text in
tests/data/promptsource/templates/ (promptsource's own files) and the rows beside them."""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from flanforge.beam_pipelines import cli
from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import SpecError, _yaml_refusal, load_catalog, parse_task_spec
from flanforge.beam_pipelines.importers import promptsource
from flanforge.beam_pipelines.render import Application, CompiledTask, PromptSkipped, RenderError, render_row
from flanforge.schemas.manifest import accounting_errors, read_manifest

DATA = Path(__file__).resolve().parents[1] / "data" / "promptsource"
COLLECTION = DATA / "templates"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / "rows" / f"{name}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(COLLECTION)  # the collection read in place, over the bundled catalog


@pytest.fixture(scope="module")
def compiled(catalog):
    return {name: CompiledTask(catalog.tasks[name]) for name in ("p3_super_glue_rte", "p3_super_glue_copa", "p3_glue_sst2", "p3_web_questions")}


def render(task: CompiledTask, row: dict, template_id: str, *, seed: int = 0, example_id: str = "validation:0"):
    prepared = task.prepare(row)
    return task.render(prepared, task.spec.template_ids.index(template_id), seed=seed, example_id=example_id)


# --- import ---------------------------------------------------------------------------------


def test_each_file_becomes_one_task_with_its_prompts_source_and_metadata(catalog):
    imported = {n: t for n, t in catalog.tasks.items() if n.startswith("p3_")}
    assert sorted(imported) == ["p3_glue_sst2", "p3_super_glue_copa", "p3_super_glue_rte", "p3_web_questions"]
    assert {n: t.cluster for n, t in imported.items()} == {
        "p3_glue_sst2": "sentiment", "p3_super_glue_copa": "commonsense", "p3_super_glue_rte": "nli", "p3_web_questions": "closed_book_qa",
    }
    rte = imported["p3_super_glue_rte"]
    assert rte.source.kind == "hf" and (rte.source.path, rte.source.name) == ("aps/super_glue", "rte")
    assert dict(rte.source.splits) == {"train": "train", "validation": "validation"}
    assert rte.promptsource == {"dataset": "super_glue", "subset": "rte", "file": "super_glue/rte/templates.yaml"}
    assert rte.metric == "accuracy" and imported["p3_web_questions"].metric == "f1"  # Accuracy; Squad
    assert len(rte.templates) == 10 and len(imported["p3_super_glue_copa"].templates) == 12
    gpt3 = next(t for t in rte.templates if t.id == "gpt_3_style")
    assert gpt3.answer_choices == "True ||| False" and gpt3.show_options is True
    assert gpt3.promptsource == {
        "id": "8fb1c6aa-20e9-438c-bece-c6af1c746449", "name": "GPT-3 style", "reference": "Same as reported in Figure G31 of the GPT-3 paper.",
        "original_task": True, "choices_in_prompt": True, "metrics": ["Accuracy"], "languages": ["en"],
    }
    assert gpt3.jinja.startswith("{{premise}}\nQuestion: {{hypothesis}} True or False? |||")
    copa_ids = imported["p3_super_glue_copa"].template_ids
    assert "what_could_happen_next_c1_or_c2" in copa_ids and "c1_or_c2_premise_so_because" in copa_ids  # names as ids


def test_flanforge_import_writes_specs_that_load_back_equal_to_reading_in_place(tmp_path, catalog, capsys):
    out = tmp_path / "p3"
    assert cli.main(["import", "promptsource", str(COLLECTION), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported 4 promptsource files, 32 prompts, as 4 tasks" in printed and "does not compile" not in printed
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.yaml")) == [
        "closed_book_qa/p3_web_questions.yaml", "commonsense/p3_super_glue_copa.yaml", "nli/p3_super_glue_rte.yaml", "sentiment/p3_glue_sst2.yaml",
    ]
    written = load_catalog(out)
    for name in ("p3_glue_sst2", "p3_super_glue_copa", "p3_super_glue_rte", "p3_web_questions"):
        assert dataclasses.replace(written.tasks[name], path="") == dataclasses.replace(catalog.tasks[name], path="")
    assert cli.main(["import", "promptsource", str(COLLECTION), "--output", str(out)]) == 2  # never mixed with an older import
    assert "not an empty folder" in capsys.readouterr().err


def test_a_file_that_is_not_promptsource_format_is_named_with_its_prompt(tmp_path):
    bad = tmp_path / "coll" / "mydata"
    bad.mkdir(parents=True)
    (bad / "templates.yaml").write_text(
        "dataset: mydata\ntemplates:\n  abc: !Template\n    id: abc\n    name: broken\n    jinja: ''\n"
        "  def: !Template\n    id: def\n    name: fine\n    jinja: 'x ||| y'\n"
    )
    with pytest.raises(SpecError) as e:
        promptsource.import_collection(tmp_path / "coll")
    assert e.value.problems == [f"{bad / 'templates.yaml'}: prompt abc: field jinja: expected a non-empty string"]
    (bad / "templates.yaml").write_text("dataset: mydata\ntemplates:\n  abc: !Python\n    id: abc\n")
    with pytest.raises(SpecError, match="could not determine a constructor for the tag '!Python'"):
        promptsource.import_collection(tmp_path / "coll")


def test_aliases_are_allowed_for_promptsource_counted_expanded_and_a_bomb_is_refused():
    shared = "a: &m {x: 1, y: [1, 2]}\nb: *m\n"
    assert _yaml_refusal(shared, aliases=True) is None
    assert "aliases (*m) are not allowed" in _yaml_refusal(shared)  # task specs still refuse them
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(6)
    )
    assert "values (aliases expanded)" in _yaml_refusal(bomb, aliases=True)


def test_schema_keeps_the_two_template_forms_apart():
    base = {"name": "t", "cluster": "nli", "description": "d", "license": "l", "metric": "accuracy",
            "source": {"kind": "jsonl", "splits": {"train": "x.jsonl"}}, "samples": [{"a": "x"}]}
    with pytest.raises(SpecError, match="should not be valid"):
        parse_task_spec({**base, "templates": [{"id": "a", "jinja": "x ||| y", "inputs": "x"}]}, "t.yaml")
    with pytest.raises(SpecError, match="should not be valid"):
        parse_task_spec({**base, "templates": [{"id": "a", "inputs": "x", "targets": "y", "answer_choices": "p ||| q"}]}, "t.yaml")
    with pytest.raises(SpecError, match="should be non-empty"):  # only an imported spec may have no samples
        parse_task_spec({**base, "samples": [], "templates": [{"id": "a", "jinja": "x ||| y"}]}, "t.yaml")


# --- rendering as promptsource does -------------------------------------------------------------


def test_named_prompts_render_exactly_what_promptsource_gives(compiled):
    rte, copa, sst2 = rows("super_glue_rte")[0], rows("super_glue_copa")[0], rows("glue_sst2")[0]
    r = render(compiled["p3_super_glue_rte"], rte, "gpt_3_style")
    assert r.inputs == (
        "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the "
        "Christopher Reeve Foundation.\nQuestion: Christopher Reeve had an accident. True or False?"
    )
    assert (r.targets, r.options, r.answer_index, r.template_type) == ("False", ("True", "False"), 1, "zero_shot")
    # promptsource's Jinja keeps the newline after {% endif %} (no trim_blocks) and the spaces around the if
    r = render(compiled["p3_super_glue_copa"], copa, "exercise")
    assert r.inputs == (
        "Exercise: choose the most plausible alternative.\n\nThe man turned on the faucet.  so... \n"
        "- The toilet filled with water.\n- Water flowed from the spout."
    )
    assert (r.targets, r.options, r.answer_index) == ("Water flowed from the spout.", ("The toilet filled with water.", "Water flowed from the spout."), 1)
    r = render(compiled["p3_super_glue_copa"], copa, "what_could_happen_next_c1_or_c2")
    assert r.inputs == 'The man turned on the faucet. What could happen next, "The toilet filled with water." or "Water flowed from the spout."?'
    r = render(compiled["p3_glue_sst2"], sst2, "positive_negative_after")
    assert r.inputs == "it 's a charming and often affecting journey . \nQuestion: Was that sentence positive or negative? Answer:"
    assert (r.targets, r.options, r.answer_index) == ("positive", ("negative", "positive"), 1)


def test_every_printed_value_is_truncated_and_a_rows_own_separator_does_not_split(compiled):
    task = compiled["p3_glue_sst2"]
    long = render(task, {"sentence": "word " * 600, "label": 0, "idx": 9}, "positive_negative_after")
    # promptsource: `| string | truncate(2048)`: cut at the last space before 2045 characters, then "..."
    assert long.inputs == "word " * 408 + "word...\nQuestion: Was that sentence positive or negative? Answer:"
    piped = render(task, {"sentence": "a ||| b", "label": 0, "idx": 9}, "positive_negative_after")
    assert piped.inputs.startswith("a ||| b\nQuestion:") and piped.targets == "negative"


def test_a_row_without_target_is_skipped_and_counted(compiled):
    task = compiled["p3_super_glue_copa"]
    cause = rows("super_glue_copa")[4]
    assert cause["question"] == "cause"
    with pytest.raises(PromptSkipped, match="no \\|\\|\\| separator"):
        render(task, cause, "what_could_happen_next_c1_or_c2")
    outcome = render_row(task, cause, split="train", example_id="e", applications=[Application(i) for i in range(task.n_templates)])
    assert (outcome.skipped, len(outcome.failures), len(outcome.records)) == (2, 0, 10)  # two prompts are for effects only


def test_choice_is_seeded_by_build_seed_example_and_template(compiled):
    task = compiled["p3_web_questions"]
    row = {"question": "what is the capital of france?", "answers": ["Paris", "Paris, France", "paris", "City of Light"], "url": "u"}
    picks = {eid: render(task, row, "get_the_answer", example_id=eid).targets for eid in (f"train:{i}" for i in range(40))}
    assert picks == {eid: render(task, row, "get_the_answer", example_id=eid).targets for eid in picks}  # same run or another
    assert set(picks.values()) == set(row["answers"])  # varies by example, always an answer
    other_seed = {eid: render(task, row, "get_the_answer", seed=7, example_id=eid).targets for eid in picks}
    assert other_seed != picks
    by_template = {tid: render(task, row, tid, example_id="train:0").targets for tid in task.spec.template_ids}
    assert len(set(by_template.values())) > 1


def spec_with(jinja: str, answer_choices: str | None = None) -> CompiledTask:
    template = {"id": "p", "jinja": jinja, **({"answer_choices": answer_choices} if answer_choices else {})}
    return CompiledTask(parse_task_spec({
        "name": "t", "cluster": "misc", "description": "d", "license": "l", "metric": "accuracy",
        "source": {"kind": "jsonl", "splits": {"train": "x.jsonl"}}, "templates": [template], "samples": [{"a": 1}],
    }, "t.yaml"))


def test_zip_and_most_frequent_are_promptsources(compiled):
    row = {"xs": ["a", "b"], "ys": [1, 2], "answers": ["b", "a", "b", "a", "c"]}
    r = spec_with("{% for x, y in zip(xs, ys) %}{{x}}={{y}} {% endfor %}||| {{ answers | most_frequent | join(',') }}").render(row, 0)
    assert (r.inputs, r.targets) == ("a=1 b=2", "b,a")


def test_what_promptsource_would_drop_silently_is_a_counted_failure():
    with pytest.raises(RenderError, match="rendered 2 \\|\\|\\| separators"):
        spec_with("a ||| b ||| c").render({"a": 1}, 0)
    with pytest.raises(RenderError, match="target 'maybe' is not one of the answer_choices \\['yes', 'no'\\]"):
        spec_with("q ||| maybe", "yes ||| no").render({"a": 1}, 0)
    with pytest.raises(RenderError, match="reserves"):
        spec_with("q ||| yes", "yes ||| no").render({"answer_choices": "x"}, 0)
    with pytest.raises(RenderError, match="'missing' is undefined"):  # the sandbox's StrictUndefined applies
        spec_with("{{ missing }} ||| yes").render({"a": 1}, 0)


# --- a real build -------------------------------------------------------------------------------


def test_a_build_of_imported_tasks_on_local_rows_balances(tmp_path):
    out = tmp_path / "out"
    code = run_build_cli([
        "--templates", str(COLLECTION), "--tasks", "p3_super_glue_rte,p3_super_glue_copa",
        "--source", f"p3_super_glue_rte={DATA / 'rows' / 'super_glue_rte.jsonl'}",
        "--source", f"p3_super_glue_copa={DATA / 'rows' / 'super_glue_copa.jsonl'}",
        "--output", str(out), "--formats", "jsonl", "--no-progress",
    ], io.StringIO())
    assert code == 0
    m = read_manifest(str(out))
    assert accounting_errors(m.tasks) == []
    copa, rte = m.tasks["p3_super_glue_copa"].counts, m.tasks["p3_super_glue_rte"].counts
    assert (copa["template_applications"], copa["skipped"], copa["failed"]) == (72, 12, 0)  # 5 effect rows x 2 + 1 cause row x 2
    assert (rte["template_applications"], rte["skipped"], rte["failed"], rte["written"]) == (60, 0, 0, 60)
    provenance = m.tasks["p3_super_glue_rte"].metadata["promptsource"]
    assert (provenance["dataset"], provenance["subset"]) == ("super_glue", "rte")
    assert provenance["templates"]["gpt_3_style"]["original_task"] is True
    records = [json.loads(line) for path in sorted(out.glob("jsonl/train/*/*.jsonl")) for line in path.read_text().splitlines()]
    gpt3 = next(r for r in records if r["task"] == "p3_super_glue_rte" and r["template_id"] == "gpt_3_style" and r["example_id"] == "train:super_glue_rte.jsonl:0")
    assert gpt3["inputs"].endswith("Question: Christopher Reeve had an accident. True or False?")
    assert (gpt3["targets"], gpt3["options"], gpt3["answer_index"], gpt3["cluster"]) == ("False", ["True", "False"], 1, "nli")


@pytest.mark.parametrize("bomb, bound", [
    ("{% for a in zip(range(100000), range(100000)) %}{% for b in range(100) %}{% endfor %}{% endfor %} ||| x", "loop iterations"),
    ("{{ ('x' * 10 ** 9) }} ||| x", "would build 1000000000 characters"),  # promptsource's `| string` binds to the last operand: hence ()
    ("{{ ((range(100000) | list) * 100) | most_frequent }} ||| x", "more than 1000000 items"),
])
def test_the_sandboxs_bounds_apply_to_promptsources_dialect_unchanged(bomb, bound):
    with pytest.raises(RenderError, match=bound):
        spec_with(bomb).render({"a": 1}, 0)
