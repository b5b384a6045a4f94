"""Templates and spec expressions are untrusted (docs/SECURITY.md): every bomb here must fail fast,
as a RenderError (a dead letter for the row) or a SpecError (at compile time) naming the bound it
hit, never hang or exhaust memory.

Each bomb runs in a forked child with a memory limit (RLIMIT_AS, about 2 GB above what the
process already maps) and a CHILD_TIMEOUT_S watchdog, so a regression fails this test quickly
instead of hanging or killing CI. The child compiles the spec (what `flanforge validate` and the
launcher do), renders the spec's sample rows as `flanforge validate` does, and renders one row as
a worker does, and reports what happened through a pipe.
"""
from __future__ import annotations

import multiprocessing
import re
import resource
import threading
import time
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flanforge.beam_pipelines import render, sandbox
from flanforge.beam_pipelines.catalog import SpecError, load_catalog, parse_task_spec
from flanforge.beam_pipelines.render import CompiledTask, RenderError, RowError, iter_sample_problems
from flanforge.beam_pipelines.text_filters import TEXT_FILTERS

CHILD_TIMEOUT_S = 20
CHILD_EXTRA_MEMORY = 2 << 30
COMPILE_SECONDS = 5.0  # a bomb's spec must compile (and validate) within this, however big its numbers
MAX_GROWTH_MB = 100  # what a bomb may add to the process's peak resident memory (the worst measured: about 25 MB)

BASE = {
    "name": "t",
    "cluster": "nli",
    "description": "d",
    "license": "l",
    "metric": "accuracy",
    "source": {"kind": "jsonl", "splits": {"train": "x.jsonl"}},
    "answers": {"options": ["yes", "no"], "label": "label"},
}
ROW = {"field": "abc", "label": 0, "nothing": None, "zero": 0, "empty": "", "row": {"title": None, "name": "n"}}


def spec(inputs: str = "{{ field }}", targets: str = "{{ answer }}", **overrides: Any) -> dict:
    return {**BASE, "samples": [ROW], "templates": [{"id": "t_01", "inputs": inputs, "targets": targets}], **overrides}


# --- running a bomb in a child process -----------------------------------------------------------


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _child(conn: Any, raw_spec: dict) -> None:
    limit = _vm_bytes() + CHILD_EXTRA_MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    report: dict[str, Any] = {"rss_kb": _rss_kb()}
    try:
        start = time.monotonic()
        try:
            task = CompiledTask(parse_task_spec(raw_spec, "t.yaml"))
        except SpecError as e:
            report.update(stage="compile", error="SpecError", message=str(e), seconds=time.monotonic() - start)
            return
        report["compile_seconds"] = time.monotonic() - start
        report["validate"] = list(iter_sample_problems(task))  # what `flanforge validate` prints
        start = time.monotonic()
        try:
            variables = task.prepare(ROW)
            assert variables is not None
            report.update(stage="render", output=task.render(variables, 0).inputs)
        except (RowError, RenderError) as e:
            report.update(stage="render", error=type(e).__name__, message=str(e))
        report["seconds"] = time.monotonic() - start
        report["peak_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - report["rss_kb"]) / 1024
    except BaseException as e:  # MemoryError from the limit, anything unexpected
        report.update(error=f"crash: {type(e).__name__}", message=str(e)[:500])
    finally:
        conn.send(report)
        conn.close()


def run_isolated(raw_spec: dict) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, raw_spec), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(CHILD_TIMEOUT_S):
            pytest.fail(f"still running after {CHILD_TIMEOUT_S} s: the bomb was not stopped")
        try:
            return receiver.recv()
        except EOFError:
            child.join(5)
            pytest.fail(f"the child died without a report (exit code {child.exitcode}): out of memory?")
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)


# --- render-time bombs ---------------------------------------------------------------------------

ALLOCATION = r"the render built more than 10000000 characters of text and lists in all \(the sandbox's per-render bound\)"
NS_LOOP = "{% set ns = namespace(v=START) %}{% for i in range(100) %}{% set ns.v = STEP %}{% endfor %}{{ ns.v | length }}"


def numbered(statement: str, times: int) -> str:
    """`statement` `times` times, N numbering each (distinct variables keep every result alive)."""
    return "".join(statement.replace("N", str(i)) for i in range(times)) + "ok"


def loop(start: str, step: str) -> str:
    return NS_LOOP.replace("START", start).replace("STEP", step)


RENDER_BOMBS = {
    # the probe's findings
    "power": ("{{ 99999999999999999999 ** 9999999 }}", r"'\*\*' would build an integer of about 6.64e\+08 bits; the sandbox's limit is 65536"),
    "nested_range": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}done",
        r"more than 1000000 loop iterations in one render",
    ),
    "lipsum": ("{{ lipsum(100000000) }}", r"lipsum writes random text, which would make the build non-reproducible"),
    "string_repeat": ("{{ 'x' * 10**10 }}", r"'\*' repeating a text of 1 characters 10000000000 times would build 10000000000 characters"),
    "field_repeat": ("{{ field * 100000000 }}", r"'\*' repeating a text of 3 characters 100000000 times"),
    "list_repeat": ("{{ [field] * 10**9 }}", r"'\*' repeating a list 1000000000 times would hold more than 1000000 items"),
    "namespace_doubling": (loop("'x'", "ns.v ~ ns.v"), r"'~' would build 131072 characters; the sandbox's limit is 100000"),
    "namespace_doubling_plus": (loop("'x'", "ns.v + ns.v"), r"'\+' would build 131072 characters"),
    "percent_width": ('{{ "%0999999999d" % 1 }}', r"'%' format with a width of 999999999; the sandbox's limit is 100000"),
    # the same ideas through other doors
    "percent_widths_add_up": ("{{ '" + "%099999d" * 5 + "' % (1, 2, 3, 4, 5) }}", r"'%' format whose widths and precisions add up to 499995"),
    "percent_star_width": ("{{ '%*d' % (999999999, 1) }}", r"'%' format '%\*': '\*' widths and precisions are not allowed"),
    "format_filter": ('{{ "%0999999999d" | format(1) }}', r"'%' format with a width of 999999999"),
    "str_format_width": ("{{ '{:>999999999}'.format(1) }}", r"str.format field \{:>999999999\}: widths over the sandbox's limit"),
    "str_format_repeat": ("{{ ('{0}' * 1000).format(field * 30000) }}", r"str.format would build more than 100000 characters"),
    "center": ("{{ field.center(10**9) }}", r"str.center\(1000000000\) would build 1000000000 characters"),
    "ljust": ("{{ field.ljust(10**9) }}", r"str.ljust\(1000000000\)"),
    "rjust": ("{{ field.rjust(10**9) }}", r"str.rjust\(1000000000\)"),
    "zfill": ("{{ field.zfill(10**9) }}", r"str.zfill\(1000000000\)"),
    "expandtabs": ("{{ ('\\t' * 1000).expandtabs(10**7) }}", r"str.expandtabs\(10000000\) would build"),
    "str_replace_doubling": (loop("'xx'", "ns.v.replace('x', 'xx')"), r"str.replace would build 131072 characters"),
    "str_join_doubling": (loop("'x'", "ns.v.join(['', '', ''])"), r"str.join would build"),
    "translate": ("{{ (field * 30000).translate({97: 'x' * 1000}) }}", r"str.translate would build"),
    "to_bytes": ("{{ (1).to_bytes(10**10, 'big') }}", r"int.to_bytes\(10000000000\)"),
    "integer_squaring": (loop("3", "ns.v * ns.v"), r"'\*' would build an integer of more than 65536 bits"),
    "center_filter": ("{{ field | center(10**9) }}", r"filter center\(1000000000\) would build"),
    "indent_filter": ("{{ (field ~ '\\n') * 1000 | indent(10**9) }}", r"filter indent"),
    "replace_filter_doubling": (loop("'xx'", "ns.v | replace('x', 'xx')"), r"filter replace would build 131072 characters"),
    "join_filter_doubling": (loop("'x'", "[ns.v, ns.v] | join"), r"filter join would build more than 100000 characters"),
    "wordwrap_filter": ("{{ (field * 30000) | wordwrap(1, wrapstring='-' * 1000) }}", r"filter wordwrap would build"),
    "batch_fill": ("{{ [1] | batch(10**9, field) | list }}", r"filter batch\(1000000000, ...\) would fill"),
    "slice_count": ("{{ [1] | slice(10**9) | list }}", r"filter slice\(1000000000\)"),
    "map_repeat": ("{{ ([field] * 1000) | map('center', 99999) | list | length }}", ALLOCATION),
    "forceescape_growth": (loop("'&' * 20000", "ns.v | forceescape"), r"filter forceescape would build"),
    # structures that share their parts: cheap to build, exponential to print, compare or hash
    "shared_lists_printed": (loop("[1]", "[ns.v, ns.v]"), r"a list built here would hold more than 1000000 items counting nested ones"),
    "shared_lists_compared": (
        "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(80) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}"
        "{% endfor %}{{ ns.a == ns.b }}",
        r"a list built here would hold more than 1000000 items",
    ),
    "shared_tuples_hashed": (loop("(1,)", "(ns.v, ns.v)"), r"a tuple built here would hold more than 1000000 items"),
    "shared_dict_values": (loop("{}", "dict(a=ns.v, b=ns.v)"), r"a dict built here would hold more than 1000000 items"),
    "shared_fromkeys": (loop("[1]", "{}.fromkeys(range(1000), ns.v)"), r"a dict built here would hold more than 1000000 items"),
    # output kept outside the render's own output bound
    "macro_buffer": (
        "{% macro m() %}{% for i in range(100000) %}{{ field ~ i }}{% endfor %}{% endmacro %}{{ m() | length }}",
        r"a macro or block would write more than 100000 characters",
    ),
    "block_set_buffer": (
        "{% set x %}{% for i in range(100000) %}{{ field }}{{ field }}{% endfor %}{% endset %}{{ x | length }}",
        r"a macro or block would write more than 100000 characters",
    ),
    # many bounded statements, each keeping a bounded copy
    "straight_line_padding": (numbered("{% set bN = field | center(99999) %}", 120), ALLOCATION),
    "straight_line_copies": ("{% set a = field * 30000 %}" + numbered("{% set bN = a | upper %}", 120), ALLOCATION),
    "straight_line_slices": ("{% set a = field * 30000 %}" + numbered("{% set bN = a[N:] %}", 120), ALLOCATION),
    "straight_line_lists": (numbered("{% set bN = range(100000) | list %}", 10), ALLOCATION),
    "straight_line_text_filter": ("{% set a = field * 30000 %}" + numbered("{% set bN = a | normalize_space %}", 120), ALLOCATION),
    "straight_line_methods": ("{% set a = field * 30000 %}" + numbered("{% set bN = a.replace('a', 'b') %}", 120), ALLOCATION),
    # time: no output, no growth, only work
    "macro_recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}x",
        r"over the 1 s render budget",
    ),
    "recursive_loop": (
        "{% set ns = namespace(v=[1, 2]) %}{% for i in range(16) %}{% set ns.v = [ns.v, ns.v] %}{% endfor %}"
        "{% for x in [ns.v] recursive %}{% if x is iterable %}{{ loop(x) }}{{ loop(x) }}{% endif %}{% endfor %}x",
        r"(over the 1 s render budget|more than 1000000 loop iterations)",
    ),
}


@pytest.mark.parametrize("name", sorted(RENDER_BOMBS))
def test_render_bomb_fails_fast_with_its_reason(name: str) -> None:
    source, reason = RENDER_BOMBS[name]
    report = run_isolated(spec(inputs=source))
    assert "compile_seconds" in report, report
    assert report["compile_seconds"] < COMPILE_SECONDS
    expected = rf"^template t_01 field inputs: {reason}"
    assert report.get("error") == "RenderError", report
    assert re.search(expected, report["message"]), report["message"]
    # `flanforge validate` renders the sample row and reports the same failure, naming the file
    assert len(report["validate"]) == 1 and re.search(r"^t\.yaml: sample #1: " + expected[1:], report["validate"][0]), report["validate"]
    assert report["peak_growth_mb"] < MAX_GROWTH_MB, report  # what the bomb made the process hold at its peak


def test_bombs_in_spec_expressions_fail_the_row() -> None:
    report = run_isolated(spec(derived={"big": "field * 10**10"}))
    assert report["error"] == "RowError" and re.search(r"^derived/big: '\*' repeating a text", report["message"]), report
    report = run_isolated(spec(filters=["99999999999999999999 ** 9999999 > 0"]))
    assert report["error"] == "RowError" and re.search(r"^filter .*: '\*\*' would build an integer", report["message"]), report


def test_a_slow_spec_expression_goes_over_the_budget() -> None:
    chain = "range(100000)" + " | map('string')" * 40 + " | list | length"
    report = run_isolated(spec(derived={"slow": chain}))
    assert report["error"] == "RowError" and report["message"] == "derived/slow: over the 1 s render budget", report
    assert report["seconds"] < 5


def test_the_budget_holds_in_a_worker_thread() -> None:
    """Beam's DirectRunner renders in threads, where no signal can interrupt a render."""
    task = CompiledTask(parse_task_spec(spec(inputs=RENDER_BOMBS["macro_recursion"][0]), "t.yaml"))
    variables = task.prepare(ROW)
    outcome: list[str] = []

    def work() -> None:
        try:
            task.render(variables, 0)
            outcome.append("rendered")
        except RenderError as e:
            outcome.append(str(e))

    start = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CHILD_TIMEOUT_S)
    assert outcome == ["template t_01 field inputs: over the 1 s render budget"] * 3
    assert time.monotonic() - start < 10
    # the thread-local budget is gone after each render: the next render in this thread is unbounded by it
    assert sandbox._STATE.deadline == float("inf")


# --- compile-time bombs --------------------------------------------------------------------------

COMPILE_BOMBS = {
    "parentheses": ("{{ " + "(" * 500 + "1" + ")" * 500 + " }}", r"line 1: brackets nested more than 20 deep"),
    "brackets": ("{{ " + "[" * 500 + "]" * 500 + " }}", r"line 1: brackets nested more than 20 deep"),
    "operator_chain": ("{{ 1" + " + 1" * 3000 + " }}", r"line 1: the template nests 3003 levels deep; the sandbox's limit is 64"),
    "filter_chain": ("{{ field" + " | trim" * 500 + " }}", r"line 1: the template nests \d+ levels deep"),
    "not_chain": ("{{ " + "not " * 1000 + "field }}", r"nested too deeply to compile \(Python's recursion limit\)"),
    "not_chain_short": ("{{ " + "not " * 70 + "field }}", r"line 1: the template nests \d+ levels deep"),
    "nested_ifs": ("{% if field %}" * 80 + "{% endif %}" * 80, r"line \d+: the template nests \d+ levels deep"),
    "nested_loops": ("{% for x in field %}" * 25 + "{% endfor %}" * 25, r"nested too deeply to compile \(too many statically nested blocks\)"),
    "integer_literal": ("{{ " + "9" * 5000 + " }}", r"line 1: an integer literal of 5000 digits; the sandbox's limit is 4300"),
    "huge_source": ("{{ field }}" + "x" * 200_000, r"the source is 200011 characters long; the sandbox's limit is 20000"),
}


@pytest.mark.parametrize("name", sorted(COMPILE_BOMBS))
def test_compile_bomb_is_one_spec_error_naming_file_template_and_field(name: str) -> None:
    source, reason = COMPILE_BOMBS[name]
    report = run_isolated(spec(targets=source))
    assert report.get("error") == "SpecError", report
    assert re.search(rf"^t\.yaml: template t_01 field targets: {reason}", report["message"]), report["message"]
    assert "\n" not in report["message"]  # one line per problem
    assert report["seconds"] < COMPILE_SECONDS


EXPRESSION_BOMBS = {
    "parentheses": ("(" * 500 + "1" + ")" * 500, r"brackets nested more than 20 deep"),
    "operator_chain": ("1" + " + 1" * 3000, r"the template nests \d+ levels deep"),
    "integer_literal": ("9" * 5000 + " > 0", r"an integer literal of 5000 digits"),
    "huge_source": ("field" + " " * 200_000, r"the source is 200005 characters long"),
}


@pytest.mark.parametrize("name", sorted(EXPRESSION_BOMBS))
def test_expression_compile_bomb_is_a_spec_error(name: str) -> None:
    source, reason = EXPRESSION_BOMBS[name]
    report = run_isolated(spec(derived={"x": source}))
    assert report.get("error") == "SpecError", report
    assert re.search(rf"^t\.yaml: field derived/x: {reason}.* in expression '", report["message"]), report["message"]
    assert len(report["message"]) < 600  # the expression is quoted shortened


def test_nothing_is_evaluated_while_compiling() -> None:
    """Jinja folds constant expressions at compile time; the sandbox folds nothing but literals."""
    env = render.make_environment()
    start = time.monotonic()
    for source in ("{{ 99999999999999999999 ** 9999999 }}", "{{ 'x' | center(99999) | center(99999) }}", "{{ lipsum(10**8) }}"):
        render.CompiledTemplate(env, source, "t")
    assert time.monotonic() - start < 1
    assert "99999" in env.compile("{{ 'x' | center(99999) }}", raw=True)  # the call is in the code, not its result


# --- the null rule -------------------------------------------------------------------------------


def render_one(inputs: str, **row: Any) -> str:
    task = CompiledTask(parse_task_spec(spec(inputs=inputs), "t.yaml"))
    return task.render(task.prepare({**ROW, **row}), 0, show_options=False).inputs


@pytest.mark.parametrize(
    "inputs, message",
    [
        ("{{ nothing }}", "'nothing' is null; test it ({% if nothing is none %}) or give a default (nothing | default('...', true))"),
        ("Title: {{ row.title }}", "'row.title' is null; test it ({% if row.title is none %}) or give a default (row.title | default('...', true))"),
        ("{{ row['title'] }}", "\"row['title']\" is null"),
        ("{{ nothing if true }}", "a value printed on line 1 is null (None); test it"),
        ("{{ 'a' ~ nothing }}", "'~' joins a null value (None)"),
        ("{{ nothing | trim }}", "filter trim got a null value (None)"),
        ("{{ nothing | upper }}", "filter upper got a null value (None)"),
        ("{{ nothing | replace('a', 'b') }}", "filter replace got a null value (None)"),
        ("{{ [field, nothing] | join(', ') }}", "filter join got a null item (None)"),
        ("{{ nothing | default('n/a') }}", "'nothing | default' is null"),  # None is defined: only boolean=true replaces it
    ],
)
def test_a_null_never_renders_as_the_word_none(inputs: str, message: str) -> None:
    with pytest.raises(RenderError) as e:
        render_one(inputs)
    assert str(e.value).startswith("template t_01 field inputs: ") and message in str(e.value)


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ("{{ nothing | default('n/a', true) }}", "n/a"),
        ("{% if nothing is none %}missing{% else %}{{ nothing }}{% endif %}", "missing"),
        ("{{ row.title if row.title is not none else row.name }}", "n"),
        ("[{{ zero }}][{{ empty }}][{{ 0 }}][{{ '' }}][{{ false }}]", "[0][][0][][False]"),
        ("{{ nothing is none }} {{ [1, nothing] | length }}", "True 2"),
        ("{{ nothing | tojson }}", "null"),
    ],
)
def test_nulls_that_are_handled_render(inputs: str, expected: str) -> None:
    assert render_one(inputs) == expected


def test_a_null_from_a_spec_expression_fails_the_render_not_the_row() -> None:
    task = CompiledTask(parse_task_spec(spec(inputs="{{ picked }}", derived={"picked": "row.title"}), "t.yaml"))
    variables = task.prepare(ROW)
    with pytest.raises(RenderError, match=r"'picked' is null"):
        task.render(variables, 0)


# --- the classic sandbox escapes still fail ----------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ field.__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ range.__globals__ }}",
    "{{ dict.mro() }}",
    "{{ namespace(a=1)._Namespace__attrs }}",
    "{{ cycler(1, 2).next.__func__ }}",
    "{% for x in [1] %}{{ loop._iterator }}{% endfor %}",
    "{{ field | attr('__class__') }}",
    "{{ lipsum | attr('__globals__') }}",
    "{{ ('{0.__class__.__mro__}' | attr('format'))(field) }}",
    "{{ '{0.__class__.__mro__}'.format(field) }}",
    "{{ '{0.__class__}'.format_map({'x': 1}) }}",
    "{{ self.__init__.__globals__ }}",
    "{{ options.append('x') }}",
    "{{ {'a': 1}.update(b=2) }}",
    "{% set x = options.pop() %}{{ x }}",
    "{% include '/etc/passwd' %}",
    "{% import 'macros.j2' as m %}{{ m }}",
    "{% from 'macros.j2' import m %}{{ m() }}",
    "{% extends 'base.j2' %}",
    "{{ field | urlize }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_classic_sandbox_escapes_still_fail(source: str) -> None:
    try:
        task = CompiledTask(parse_task_spec(spec(inputs=source), "t.yaml"))
    except SpecError as e:  # `urlize` is gone: refused when the spec compiles
        assert "No filter named 'urlize'" in str(e)
        return
    with pytest.raises(RenderError, match=r"^template t_01 field inputs: ") as e:
        task.render(task.prepare(ROW), 0)
    assert not re.search(r"<class|<module|<function|os\.|__builtins__", str(e.value)), str(e.value)


# --- ordinary templates are unchanged ------------------------------------------------------------------


def plain_environment() -> jinja2.Environment:
    """What make_environment built before the bounds: Jinja's own sandbox, same options."""
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
    )
    env.filters.update(TEXT_FILTERS)
    return env


def every_render(task: CompiledTask) -> list[Any]:
    out: list[Any] = []
    for raw in task.spec.samples:
        try:
            variables = task.prepare(raw)
        except RowError as e:
            out.append(("row error", str(e)))
            continue
        if variables is None:
            out.append("filtered")
            continue
        for i in range(task.n_templates):
            for show_options in (None, True, False):
                try:
                    out.append((task.applies(variables, i), task.render(variables, i, show_options)))
                except RenderError as e:
                    out.append(("render error", str(e)))
    return out


def test_the_bundled_catalog_renders_exactly_as_with_jinjas_plain_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog()
    bounded = {name: CompiledTask(spec) for name, spec in catalog.tasks.items()}
    assert [p for task in bounded.values() for p in iter_sample_problems(task)] == []  # `flanforge validate` is ok
    monkeypatch.setattr(render, "make_environment", plain_environment)
    plain = {name: CompiledTask(spec) for name, spec in catalog.tasks.items()}
    assert not isinstance(next(iter(plain.values()))._templates[0][1]._context._class, type(None))
    renders = 0
    for name in catalog.tasks:
        ours, theirs = every_render(bounded[name]), every_render(plain[name])
        assert ours == theirs, name
        renders += len(ours)
    assert len(catalog.tasks) == 74 and renders > 5000


# --- which renders start a budget ------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, budgeted",
    [
        ('Review: "{{ text }}"\nSentiment?', False),  # SST-2's templates: nothing to bound, nothing to pay
        ("{{ a | trim | lower }} {{ b ~ '!' }} {{ c[:20] }}", False),  # each operation runs once
        ("{{ a }}" + "{{ a ~ b }}" * 9, True),  # more than MAX_UNBUDGETED_SITES operations that build something
        ("{% for x in xs %}{{ x }}{% endfor %}", True),
        ("{{ a.upper() }}", True),
        ("{% macro m() %}x{% endmacro %}{{ m() }}", True),
        ("{{ xs | map('upper') | join }}", True),
    ],
)
def test_only_templates_that_can_repeat_or_build_much_start_a_budget(source: str, budgeted: bool) -> None:
    assert sandbox.compile_template(render.make_environment(), source).budgeted is budgeted


def test_a_render_leaves_no_budget_behind() -> None:
    task = CompiledTask(parse_task_spec(spec(inputs="{% for x in field %}{{ x }}{% endfor %}"), "t.yaml"))
    assert task.render(task.prepare(ROW), 0, show_options=False).inputs == "abc"
    assert sandbox._STATE.deadline == float("inf") and sandbox._STATE.iterations_left > sandbox.MAX_LOOP_ITERATIONS
