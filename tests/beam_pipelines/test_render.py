import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flanforge.beam_pipelines.catalog import SpecError, parse_task_spec
from flanforge.beam_pipelines.render import (
    Application,
    CompiledExpression,
    CompiledTask,
    CompiledTemplate,
    RenderError,
    RowError,
    TemplateMode,
    choose_exemplars,
    make_environment,
    render_few_shot,
    render_row,
    resolve_path,
)

BASE = {
    "name": "t",
    "cluster": "nli",
    "description": "d",
    "license": "l",
    "metric": "accuracy",
    "source": {"kind": "jsonl", "splits": {"train": "x.jsonl"}},
    "answers": {"options": ["yes", "no"], "label": "label"},
    "samples": [{"a": "x", "label": 0}],
}


def task(templates, **overrides):
    return CompiledTask(parse_task_spec({**BASE, **overrides, "templates": templates}, "t.yaml"))


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.text(), min_size=3))
def test_fast_render_is_byte_identical_to_jinja(values):
    env = make_environment()
    source = "{{ a }} and {{ b | upper }}{% if c %} / {{ c | length }}{% endif %}{% for x in [1, 2] %}-{{ x }}{% endfor %}"
    assert CompiledTemplate(env, source, "t").render(values) == env.from_string(source).render(values).strip()


EXPRESSIONS = ["a | trim", "label in (0, 1)", "[a, b] | join('/')", "a ~ b if label else b", "range(label) | list", "missing_one", "a.upper"]


@settings(max_examples=200)
@given(st.sampled_from(EXPRESSIONS), st.text(), st.text(), st.integers(-3, 3))
def test_compiled_expression_equals_jinjas_compile_expression(source, a, b, label):
    env = make_environment()
    values = {"a": a, "b": b, "label": label}
    ours, theirs = CompiledExpression(env, source), env.compile_expression(source, undefined_to_none=False)
    for _ in range(2):  # a clone per call: nothing carries over from the first
        expected, got = theirs(**values), ours(values)
        assert type(got) is type(expected)
        if isinstance(expected, jinja2.Undefined):
            assert got._undefined_name == expected._undefined_name
        else:
            assert got == expected


def test_missing_variable_names_template_and_field():
    t = task([{"id": "t_01", "inputs": "{{ a }} {{ hypotesis }}", "targets": "{{ answer }}"}])
    variables = t.prepare({"a": "x", "label": 0})
    with pytest.raises(RenderError, match=r"template t_01 field inputs: .*'hypotesis' is undefined"):
        t.render(variables, 0)


@pytest.mark.parametrize(
    "source",
    ["{{ a.__class__.__mro__ }}", "{{ ''.__class__.__subclasses__() }}", "{{ options.append('x') }}", "{% include '/etc/passwd' %}"],
)
def test_sandbox_blocks_code_and_files(source):
    t = task([{"id": "t_01", "inputs": source, "targets": "{{ answer }}"}])
    with pytest.raises(RenderError, match="template t_01 field inputs"):
        t.render(t.prepare({"a": "x", "label": 0}), 0)


def test_output_length_is_bounded():
    t = CompiledTask(parse_task_spec({**BASE, "templates": [{"id": "t_01", "inputs": "{% for i in range(5000) %}{{ a }}{% endfor %}", "targets": "{{ answer }}"}]}, "t.yaml"), max_chars=1000)
    with pytest.raises(RenderError, match="longer than 1000"):
        t.render(t.prepare({"a": "xyz", "label": 0}), 0)


def test_syntax_error_names_file_template_field_and_line():
    with pytest.raises(SpecError, match=r"t.yaml: template t_02 field targets: line 1: "):
        task([{"id": "t_01", "inputs": "{{ a }}", "targets": "{{ answer }}"}, {"id": "t_02", "inputs": "{{ a }}", "targets": "{{ answer "}])


def test_options_appended_recorded_and_hidden_variants():
    t = task(
        [
            {"id": "t_01", "inputs": "Is {{ a }} so?", "targets": "{{ answer }}"},
            {"id": "t_02", "inputs": "Is {{ a }} so? yes or no", "targets": "{{ answer }}", "show_options": False},
            {"id": "t_03", "inputs": "Say something {{ answer }} about it", "targets": "{{ a }}", "inverted": True},
        ]
    )
    v = t.prepare({"a": "x", "label": 1})
    shown, hidden, inverted = (t.render(v, i) for i in range(3))
    assert shown.inputs == "Is x so?\n\nOPTIONS:\n- yes\n- no" and shown.targets == "no"
    assert (shown.options, shown.answer_index, shown.template_type) == (("yes", "no"), 1, "zero_shot")
    assert hidden.inputs == "Is x so? yes or no" and hidden.template_type == "zero_shot_no_options" and hidden.options == ("yes", "no")
    assert (inverted.options, inverted.answer_index, inverted.template_type) == ((), -1, "inverted")


def test_target_outside_options_is_an_error():
    t = task([{"id": "t_01", "inputs": "{{ a }}", "targets": "maybe"}])
    with pytest.raises(RenderError, match="not one of the options"):
        t.render(t.prepare({"a": "x", "label": 0}), 0)


def test_fields_filters_derived_and_computed_options():
    t = task(
        [{"id": "t_01", "inputs": "{{ q }} ({{ n }} choices)", "targets": "{{ answer }}"}],
        fields={"q": "question.stem", "choices": "choices.text", "labels": "choices.label", "key": "answerKey"},
        derived={"n": "choices | length"},
        filters=["key != ''"],
        answers={"options": "choices", "label": "labels.index(key)"},
    )
    row = {"question": {"stem": "Which?"}, "choices": {"text": ["red", "blue"], "label": ["A", "B"]}, "answerKey": "B"}
    r = t.render(t.prepare(row), 0)
    assert r.targets == "blue" and r.inputs.startswith("Which? (2 choices)")
    assert t.prepare({**row, "answerKey": ""}) is None
    with pytest.raises(RowError, match="field choices: source row has no 'choices.text'"):
        t.prepare({"question": {"stem": "x"}, "answerKey": "A"})


def test_resolve_path_indexes_lists():
    assert resolve_path({"answers": {"text": ["a", "b"]}}, "answers.text.1") == "b"
    with pytest.raises(RowError):
        resolve_path({"answers": {"text": []}}, "answers.text.0")


def test_render_row_turns_every_failure_into_a_counted_failure():
    t = task([{"id": "t_01", "inputs": "{{ a }}", "targets": "{{ answer }}"}, {"id": "t_02", "inputs": "{{ nope }}", "targets": "{{ answer }}"}])
    ok = render_row(t, {"a": "x", "label": 0}, split="train", example_id="e", applications=[Application(0), Application(1)])
    assert len(ok.records) == 1 and len(ok.failures) == 1 and "t_02" in ok.failures[0]
    broken = render_row(t, {"label": 7}, split="train", example_id="e", applications=[Application(0), Application(1)])
    assert broken.records == [] and len(broken.failures) == 2


def test_template_modes():
    ids = tuple(f"t_{i}" for i in range(10))
    kw = dict(seed=3, task="t", shard="s")
    assert TemplateMode.parse("all").select(ids, example_id="e", ordinal=0, **kw) == list(range(10))
    rr = [TemplateMode.parse("round_robin").select(ids, example_id=str(i), ordinal=i, **kw)[0] for i in range(30)]
    assert sorted(rr) == sorted(list(range(10)) * 3)  # every template exactly 3 times in 30 rows
    picks = TemplateMode.parse("sample:3").select(ids, example_id="e1", ordinal=0, **kw)
    assert len(picks) == 3 and picks == TemplateMode.parse("sample:3").select(ids, example_id="e1", ordinal=5, **kw)
    for bad in ("sample:0", "some", "sample:x"):
        with pytest.raises(ValueError):
            TemplateMode.parse(bad)


def test_bundled_catalog_loads_and_every_sample_renders():
    from flanforge.beam_pipelines.validate import catalog_problems

    catalog, problems = catalog_problems(None)
    assert problems == []
    assert catalog is not None and "rte" in catalog.tasks


def test_exemplars_exclude_the_row_and_are_seeded():
    pool = [(f"e{i}", {"a": f"x{i}", "label": i % 2}) for i in range(6)]
    picked = choose_exemplars(pool, seed=1, task="t", example_id="e3")
    assert {"a": "x3", "label": 1} not in picked and len(picked) == 5
    assert picked == choose_exemplars(pool, seed=1, task="t", example_id="e3")


def test_few_shot_render_prefixes_exemplars_with_the_same_template():
    t = task([{"id": "t_01", "inputs": "Is {{ a }} so?", "targets": "{{ answer }}"}])
    exemplars = [{"a": "p", "label": 0}, {"label": 1}, {"a": "q", "label": 1}, {"a": "r", "label": 0}]
    r = render_few_shot(t, t.prepare({"a": "x", "label": 1}), Application(0, None, True), exemplars, k=2, separator="\n\n")
    options = "\n\nOPTIONS:\n- yes\n- no"
    # the second exemplar cannot be prepared (no field a) and is skipped
    assert r.inputs == f"Is p so?{options}\nyes\n\nIs q so?{options}\nno\n\nIs x so?{options}"
    assert (r.targets, r.template_type) == ("no", "few_shot")
    with pytest.raises(RenderError, match="no exemplars"):
        render_few_shot(t, t.prepare({"a": "x", "label": 1}), Application(0, None, True), [], k=2, separator="\n\n")
