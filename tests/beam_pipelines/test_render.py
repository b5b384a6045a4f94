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


def test_random_is_seeded_per_row_and_lipsum_refused():
    """Jinja's `random` reads Python's global random state; here it picks by the build seed, task,
    example and template, so the same inputs render the same text on every run and worker."""
    verbs = ["Say", "Tell", "Write", "Give", "Show", "Answer", "Decide", "Judge"]
    t = task([{"id": "t_01", "inputs": "{{ %r | random }}: {{ a }}" % verbs, "targets": "{{ answer }}"}])
    v = t.prepare({"a": "x", "label": 0})
    picks = {(seed, ex): t.render(v, 0, seed=seed, example_id=ex).inputs for seed in range(4) for ex in ("e1", "e2", "e3")}
    again = {(seed, ex): t.render(v, 0, seed=seed, example_id=ex).inputs for seed in range(4) for ex in ("e1", "e2", "e3")}
    assert picks == again and len(set(picks.values())) > 2 and all(p.split(":")[0] in verbs for p in picks.values())
    # a spec expression has no row seed to draw with: refused, not random
    derived = task([{"id": "t_01", "inputs": "{{ w }}", "targets": "{{ answer }}"}], derived={"w": "['a', 'b'] | random"})
    with pytest.raises(RowError, match=r"filter random: this render has no seed"):
        derived.prepare({"a": "x", "label": 0})
    lipsum = task([{"id": "t_01", "inputs": "{{ lipsum(1) }}", "targets": "{{ answer }}"}])
    with pytest.raises(RenderError, match=r"template t_01 field inputs: lipsum writes random text"):
        lipsum.render(v, 0)


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


# --- the bounded sandbox renders what Jinja's own sandbox renders ---------------------------------

SANDBOX_TEMPLATES = [
    "{{ a }}|{{ n }}|{{ items }}|{{ (a, n) }}|{{ {'k': n} }}|{{ 2.5 }}|{{ true }}",
    "{{ a ~ b ~ n }}{{ [a, b] | join('/') }}{{ items | join(', ') }}",
    "{{ a + b }}{{ n + 3 }}{{ n * 3 }}{{ a * 2 }}{{ items * 2 }}{{ n ** 3 }}{{ 2 ** n }}{{ n % 3 }}{{ '%s=%05.1f' % (a, n) }}",
    "{{ a | trim | upper }}{{ b | lower | title | capitalize }}{{ a | replace('a', 'bb') }}{{ b | replace('', '-', 2) }}",
    "{{ a | center(9) }}{{ a | indent(2, true) }}{{ '%s-%d' | format(a, n) }}{{ a | wordwrap(5) }}{{ a | truncate(12) }}",
    "{{ a | string | length }}{{ items | tojson }}{{ a | tojson }}{{ items | pprint }}{{ a | e }}{{ a | forceescape }}{{ a | urlencode }}",
    "{{ items | map('upper') | join }}{{ items | select('string') | list }}{{ items | reject('in', [a]) | list }}{{ items | batch(2, 'x') | list }}",
    "{{ items | slice(2) | list }}{{ [[1], [2, 3]] | sum(start=[]) }}{{ items | sort | first }}{{ items | unique | list }}{{ items | wordcount }}",
    "{% for x in items %}{{ loop.index }}:{{ x }}{{ loop.cycle('-', '+') }}{% else %}none{% endfor %}",
    "{% for x in range(n) if x is odd %}{{ x }}{% endfor %}{% for x in items | map('length') %}{{ x }}{% endfor %}",
    "{% for k, v in {'a': a, 'b': b} | dictsort %}{{ k }}={{ v }};{% endfor %}",
    "{% for x in range(n * 30) %}{{ loop.length - loop.index }}{% if loop.last %}!{% endif %}{% endfor %}"
    "{% for x in range(n * 30) | map('string') %}{{ x }}{{ loop.revindex }}{% endfor %}",
    "{% for x in [items, [a, [b]]] recursive %}[{% if x is string %}{{ x }}{% else %}{{ loop(x) }}{% endif %}]{% endfor %}",
    "{% macro m(x, y='d') %}<{{ x }}|{{ y }}>{% endmacro %}{% macro c(z) %}[{{ z }}{{ caller() }}]{% endmacro %}{{ m(a) }}{{ m(b, n) }}"
    "{% call c(a) %}in{{ b }}{% endcall %}",
    "{% set s %}{{ a }}{{ b }}{% endset %}{{ s | length }}{% filter upper %}{{ a }}x{% endfilter %}",
    "{% set ns = namespace(t='') %}{% for x in items %}{% set ns.t = ns.t ~ x %}{% endfor %}{{ ns.t }}",
    "{{ a.center(7, '*') }}{{ a.ljust(4) }}{{ b.rjust(4) }}{{ a.zfill(5) }}{{ ('x\\ty').expandtabs(4) }}{{ a.replace('a', 'c') }}",
    "{{ ', '.join(items) }}{{ '{}-{:>4}-{k}'.format(a, n, k=b) }}{{ '{x}'.format_map({'x': a}) }}{{ a.translate({97: 'AA'}) }}",
    "{{ a if n > 2 else b }}{{ n is divisibleby 2 }}{{ a in items }}{{ items | length > n }}{{ (n).to_bytes(2, 'big') }}",
    "{{ dict(x=a, y=items) }}{{ {}.fromkeys(items, n) }}{{ cycler(a, b).next() }}{{ [a, [b, items]] }}",
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(SANDBOX_TEMPLATES),
    st.text(max_size=12),
    st.text(max_size=12),
    st.integers(0, 6),
    st.lists(st.text(max_size=5), max_size=4),
)
def test_bounded_sandbox_renders_like_jinjas_own(source, a, b, n, items):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from flanforge.beam_pipelines.text_filters import TEXT_FILTERS

    plain = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
    )
    plain.filters.update(TEXT_FILTERS)
    values = {"a": a, "b": b, "n": n, "items": items}

    def outcome(env):
        try:
            return env.from_string(source).render(values)
        except Exception as e:  # the same failure on both sides counts as the same outcome
            return type(e).__name__

    assert outcome(make_environment()) == outcome(plain)


def test_template_compile_failures_without_a_line_say_so():
    with pytest.raises(SpecError, match=r"^t.yaml: template t_01 field inputs: nested too deeply to compile \(too many statically nested blocks\)$"):
        task([{"id": "t_01", "inputs": "{% for x in a %}" * 25 + "{% endfor %}" * 25, "targets": "{{ answer }}"}])


def test_sandbox_refusals_are_dead_letters_without_a_type_name():
    t = task([{"id": "t_01", "inputs": "{{ a * 10**9 }}", "targets": "{{ answer }}"}], derived={"b": "a * 10**9"})
    with pytest.raises(RowError, match=r"^derived/b: '\*' repeating a text of 1 characters 1000000000 times"):
        t.prepare({"a": "x", "label": 0})
    t = task([{"id": "t_01", "inputs": "{{ a * 10**9 }}", "targets": "{{ answer }}"}])
    with pytest.raises(RenderError, match=r"^template t_01 field inputs: '\*' repeating a text"):
        t.render(t.prepare({"a": "x", "label": 0}), 0)
