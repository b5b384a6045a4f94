"""Rendering: one source row through the templates of its task, in a Jinja sandbox.

Templates come from contributors, so they are untrusted: they run in `sandbox.BoundedSandbox`,
Jinja's ImmutableSandboxedEnvironment (no attribute tricks, no mutation, no file loader, so no
include/import) bounded in time and memory (docs/SECURITY.md), with StrictUndefined (a misspelt
variable is an error, not an empty string), a bound on output length, and no null printed as the
word None. They are compiled once per `CompiledTask` (once per worker in Beam), never per row.
Nothing here imports Beam: `render_shard.py` drives it over a read shard, and the DoFn in
`transforms.py` is a thin wrapper around that.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import jinja2
from jinja2.nodes import EvalContext

from flanforge.beam_pipelines import sandbox
from flanforge.beam_pipelines.catalog import SpecError, TaskSpec, TemplateSpec
from flanforge.beam_pipelines.hashing import content_hash, seeded_hash
from flanforge.beam_pipelines.sandbox import (
    DRAWS_VARIABLE,
    PROMPTSOURCE_FILTERS,
    RENDER_TIME_BUDGET_S,
    BoundedSandbox,
    SandboxRefusal,
    SeededDraws,
    short_repr,
)
from flanforge.beam_pipelines.text_filters import TEXT_FILTERS
from flanforge.schemas.records import NO_ANSWER, Record

OPTIONS_HEADER = "OPTIONS:"
MAX_OUTPUT_CHARS = 100_000


class RowError(ValueError):
    """A row cannot be prepared for rendering (missing field, bad options or label)."""


class RenderError(ValueError):
    """A template failed on one row; the message names the template and field."""


class PromptSkipped(RenderError):
    """A promptsource-form template has no inputs or no target for this row (its output has no
    ||| or a side of it is empty): the application is counted `skipped`, as P3 dropped such rows.
    A RenderError, so a caller that does not tell them apart treats it as one that did not render."""


def make_environment() -> BoundedSandbox:
    # trim_blocks/lstrip_blocks let templates written as YAML block scalars use {% if %} lines
    # without leaving stray blank lines behind.
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(TEXT_FILTERS)  # unescape_html, normalize_space, detokenize, regex_replace (docs/FILTERS.md)
    return env


def make_promptsource_environment() -> BoundedSandbox:
    """promptsource's Jinja dialect in the same sandbox: Jinja's default whitespace handling (its
    templates were written without trim_blocks/lstrip_blocks), its `zip` global and its `choice`
    (seeded here) and `most_frequent` filters. StrictUndefined and the null rule still apply."""
    env = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals["zip"] = zip  # lazy: a loop over it counts its iterations like any other
    env.filters.update(PROMPTSOURCE_FILTERS)
    return env


def _failure_text(e: Exception) -> str:
    """A render failure as a dead letter reads it: the sandbox's refusals and our own errors as
    they are, anything else with its type."""
    return str(e) if isinstance(e, (RenderError, SandboxRefusal)) else f"{type(e).__name__}: {e}"


class _ContextMaker:
    """Makes the render context of a compiled template or expression, fast and exactly.

    `jinja2.Template.render` and `TemplateExpression.__call__` build their context through several
    layers of calls (a ChainMap walk, a set of the globals, a fresh evaluation context) on every
    call, and templates run twice per record. Here a context made the ordinary way once is cloned
    per call, with fresh variables and fresh copies of everything a render can change (its
    variables, exported names, evaluation context and block stacks). Tests check that renders
    and expression results equal Jinja's own."""

    def __init__(self, env: jinja2.Environment, template: jinja2.Template, name: str | None):
        self._root = template.root_render_func
        self._globals = dict(template.globals)
        self._class = env.context_class
        probe = env.context_class(env, dict(self._globals), name, template.blocks, globals=self._globals)
        self._state = dict(probe.__dict__)
        self._eval_state = dict(probe.eval_ctx.__dict__)
        self._blocks = template.blocks

    def run(self, variables: Mapping[str, Any]) -> tuple[Any, Iterator[str]]:
        ctx = object.__new__(self._class)
        state = ctx.__dict__
        state.update(self._state)
        state["parent"] = {**self._globals, **variables}
        state["vars"] = {}
        state["exported_vars"] = set()
        eval_ctx = object.__new__(EvalContext)
        eval_ctx.__dict__.update(self._eval_state)
        state["eval_ctx"] = eval_ctx
        if self._blocks:
            state["blocks"] = {k: [v] for k, v in self._blocks.items()}
        return ctx, self._root(ctx)


class CompiledTemplate:
    """A compiled Jinja template with a fast, exact render path, a bound on its output length and
    a time budget (`budget_s`, wall clock) per render.

    Compiling refuses (TemplateSyntaxError) what sandbox.compile_template refuses: sources over
    sandbox.MAX_SOURCE_CHARS, deep nesting, huge integer literals, and whatever makes Python's own
    compiler fail."""

    def __init__(self, env: jinja2.Environment, source: str, name: str, budget_s: float = RENDER_TIME_BUDGET_S):
        self.name = name
        compiled = sandbox.compile_template(env, source)
        self._context = _ContextMaker(env, compiled.template, name)
        self.variables = compiled.variables
        self._budgeted = compiled.budgeted  # loops, calls or growing operations: deadline and allowances apply
        self.draws = compiled.draws  # picks with `random`: its render needs the row's SeededDraws
        self.budget_s = budget_s

    def render(self, variables: Mapping[str, Any], max_chars: int = MAX_OUTPUT_CHARS) -> str:
        parts: list[str] = []
        size = 0
        budgeted = self._budgeted
        if budgeted:
            sandbox.begin_render(self.budget_s)
        try:
            for chunk in self._context.run(variables)[1]:
                size += len(chunk)
                if size > max_chars:
                    raise RenderError(f"output is longer than {max_chars} characters")
                parts.append(chunk)
        finally:
            if budgeted:
                sandbox.end_render()
        return "".join(parts).strip()


class CompiledExpression:
    """A compiled Jinja expression (as `Environment.compile_expression`), called with a mapping,
    within the same compile limits and time budget as templates."""

    def __init__(self, env: jinja2.Environment, source: str, budget_s: float = RENDER_TIME_BUDGET_S):
        compiled = sandbox.compile_expression(env, source)
        self._context = _ContextMaker(env, compiled.template, None)
        self._budgeted = compiled.budgeted
        self.budget_s = budget_s

    def __call__(self, variables: Mapping[str, Any]) -> Any:
        if not self._budgeted:
            ctx, events = self._context.run(variables)
            for _ in events:
                pass
            return ctx.vars["result"]
        sandbox.begin_render(self.budget_s)
        try:
            ctx, events = self._context.run(variables)
            for _ in events:
                pass
            return ctx.vars["result"]
        finally:
            sandbox.end_render()


PROMPT_SEPARATOR = "|||"  # promptsource's form: between inputs and targets, and between options
PROMPTSOURCE_TRUNCATE = 2048  # promptsource prints every value truncated to this many characters
_PIPE_GUARD = "\ue000\ue001\ue000"  # stands in for a ||| inside a row's text while a prompt renders


def promptsource_source(jinja: str) -> str:
    """A promptsource template's source as promptsource renders it: every `}}` becomes
    `| string | truncate(2048) }}`, so each printed value is cut at a word near 2,048 characters."""
    return jinja.replace("}}", f" | string | truncate({PROMPTSOURCE_TRUNCATE}) }}}}")


def _guard_pipes(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The row with ||| in its top-level text values hidden, so only the template's own separators split."""
    return {k: v.replace(PROMPT_SEPARATOR, _PIPE_GUARD) if v.__class__ is str and PROMPT_SEPARATOR in v else v for k, v in variables.items()}


def _split_output(text: str) -> list[str]:
    return [part.replace(_PIPE_GUARD, PROMPT_SEPARATOR).strip() for part in text.split(PROMPT_SEPARATOR)]


class CompiledPrompt(NamedTuple):
    """A template in promptsource's form: the source (truncating as promptsource does) and, for a
    template with options, its answer_choices."""

    source: CompiledTemplate
    choices: CompiledTemplate | None


@dataclass(frozen=True)
class Rendered:
    """One rendered example (before it becomes an output record)."""

    template_id: str
    template_type: str
    inputs: str
    targets: str
    options: tuple[str, ...]
    answer_index: int


def format_options(options: Iterable[str]) -> str:
    return OPTIONS_HEADER + "\n" + "\n".join(f"- {o}" for o in options)


def resolve_path(row: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted path (integers index lists) into a nested source row."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:  # dict first: the common case, and a fast check
            value = value[part]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise RowError(f"source row has no {path!r} (stopped at {part!r}){_fields_hint(row, value)}")
    return value


def _fields_hint(row: Mapping[str, Any], at: Any) -> str:
    """The names the row does have, so a header-less file read as headed shows itself at once."""
    if at is not row or not isinstance(row, Mapping):
        return ""
    names = [str(k) for k in row]
    shown = ", ".join(repr(n[:40]) for n in names[:8]) + (", …" if len(names) > 8 else "")
    return f"; the row has {shown}"


class CompiledTask:
    """A task spec with every expression and template compiled, ready to render rows.

    Construction raises SpecError naming file, template and field for every template or
    expression that does not compile. `prepare` and `render` raise RowError / RenderError for
    problems that only show on a particular row; the pipeline turns those into dead letters.
    """

    def __init__(self, spec: TaskSpec, max_chars: int = MAX_OUTPUT_CHARS):
        self.spec = spec
        self.max_chars = max_chars
        env = make_environment()
        problems: list[str] = []

        def expression(source: str, where: str) -> Callable[[Mapping[str, Any]], Any]:
            try:
                return CompiledExpression(env, source)
            except jinja2.TemplateSyntaxError as e:
                shown = source if len(source) <= 200 else source[:199] + "…"
                problems.append(f"{spec.path}: {where}: {e.message} in expression {shown!r}")
                return lambda _: None

        def template(t: TemplateSpec, field_name: str, source: str, environment: jinja2.Environment = env) -> CompiledTemplate | None:
            try:
                return CompiledTemplate(environment, source, f"{spec.name}/{t.id}/{field_name}")
            except jinja2.TemplateSyntaxError as e:
                line = f"line {e.lineno}: " if e.lineno else ""  # 0: the whole source (its size, or Python's compiler)
                problems.append(f"{spec.path}: template {t.id} field {field_name}: {line}{e.message}")
                return None

        self._derived = [(n, expression(src, f"field derived/{n}")) for n, src in spec.derived.items()]
        self._filters = [(src, expression(src, f"field filters/{i}")) for i, src in enumerate(spec.filters)]
        answers = spec.answers
        self._options_expr = (
            expression(answers.options, "field answers/options")
            if answers is not None and isinstance(answers.options, str)
            else None
        )
        self._label_expr = expression(answers.label, "field answers/label") if answers is not None else None
        self._templates = [
            (t, template(t, "inputs", t.inputs), template(t, "targets", t.targets)) if t.jinja is None else (t, None, None)
            for t in spec.templates
        ]
        prompt_env = make_promptsource_environment() if any(t.jinja is not None for t in spec.templates) else env
        self._prompts: list[CompiledPrompt | None] = []
        for t in spec.templates:
            source = None if t.jinja is None else template(t, "jinja", promptsource_source(t.jinja), prompt_env)
            choices = template(t, "answer_choices", t.answer_choices, prompt_env) if t.answer_choices else None
            self._prompts.append(None if source is None else CompiledPrompt(source, choices))
        self._applies = [expression(t.filter, f"template {t.id} field filter") if t.filter else None for t in spec.templates]
        self._cot_phrase: CompiledTemplate | None = None
        if any(t.cot for t in spec.templates):
            try:
                self._cot_phrase = CompiledTemplate(env, spec.cot_answer_phrase, f"{spec.name}/cot_answer_phrase")
            except jinja2.TemplateSyntaxError as e:
                problems.append(f"{spec.path}: field cot_answer_phrase: {e.message}")
        if problems:
            raise SpecError(problems)

    def as_task(self, spec: TaskSpec) -> "CompiledTask":
        """The same compiled templates under `spec`, which differs from this one's only in name."""
        twin = copy.copy(self)
        twin.spec = spec
        return twin

    @property
    def n_templates(self) -> int:
        return len(self._templates)

    def applies(self, variables: Mapping[str, Any], template_index: int) -> bool:
        """Whether the template's own `filter` keeps this prepared row (no filter: always)."""
        expr = self._applies[template_index]
        if expr is None:
            return True
        try:
            return bool(expr(variables))
        except Exception as e:  # contributed code: a failure of this application, never a crash
            raise RenderError(f"template {self.spec.templates[template_index].id} field filter: {_failure_text(e)}") from None

    def prepare(self, raw: Mapping[str, Any]) -> dict[str, Any] | None:
        """Map a source row to template variables; None when a spec filter drops it."""
        spec = self.spec
        if spec.fields is None:
            variables = dict(raw)
        else:
            variables = {}
            for name, path in spec.fields.items():
                try:
                    variables[name] = resolve_path(raw, path)
                except RowError as e:
                    raise RowError(f"field {name}: {e}") from None
        for name, expr in self._derived:
            variables[name] = self._evaluate(expr, variables, f"derived/{name}")
        for source, expr in self._filters:
            if not self._evaluate(expr, variables, f"filter {source!r}"):
                return None
        if spec.answers is not None:
            self._attach_answer(variables)
        return variables

    def _evaluate(self, expr: Callable[[Mapping[str, Any]], Any], variables: Mapping[str, Any], where: str) -> Any:
        try:
            return expr(variables)
        except Exception as e:  # any failure of contributed code is a row problem, never a crash
            raise RowError(f"{where}: {_failure_text(e)}") from None

    def _attach_answer(self, variables: dict[str, Any]) -> None:
        answers = self.spec.answers
        assert answers is not None and self._label_expr is not None
        if self._options_expr is None:
            options = list(answers.options)
        else:
            options = self._evaluate(self._options_expr, variables, "answers/options")
            if not isinstance(options, (list, tuple)) or not options or not all(isinstance(o, str) for o in options):
                raise RowError(f"answers/options: expected a non-empty list of strings, got {short_repr(options)}")
            options = list(options)
        label = self._evaluate(self._label_expr, variables, "answers/label")
        if isinstance(label, str):
            if label not in options:
                raise RowError(f"answers/label: {short_repr(label)} is not one of the options {short_repr(options)}")
            index = options.index(label)
        elif isinstance(label, int) and 0 <= label < len(options):
            index = label
        else:
            raise RowError(f"answers/label: {short_repr(label)} is not an index into the {len(options)} options")
        variables["options"] = options
        variables["answer_index"] = index
        variables["answer"] = options[index]

    def _render_cot(
        self, spec: TemplateSpec, variables: Mapping[str, Any], inputs: str, rationale: str, options: list[str], show_options: bool | None
    ) -> Rendered:
        """A chain-of-thought record: the rationale, then the answer sentence (`cot_answer_phrase`) after a
        space, or on a line of its own when the rationale has several lines. The options are shown as
        for any template, but the target is not one of them, so the record carries none."""
        assert self._cot_phrase is not None
        try:
            phrase = self._cot_phrase.render(variables, self.max_chars)
        except Exception as e:  # untrusted template: report, never crash the build
            raise RenderError(f"template {spec.id} field cot_answer_phrase: {_failure_text(e)}") from None
        if not phrase:
            raise RenderError(f"template {spec.id} field cot_answer_phrase: rendered empty")
        if options and (spec.show_options if show_options is None else show_options):
            inputs = f"{inputs}\n\n{format_options(options)}"
        separator = "\n" if "\n" in rationale else " "
        return Rendered(spec.id, "cot", inputs, f"{rationale}{separator}{phrase}", (), NO_ANSWER)

    def _render_prompt(self, spec: TemplateSpec, prompt: CompiledPrompt, variables: Mapping[str, Any], draws: SeededDraws) -> Rendered:
        """A promptsource-form template on one row, as promptsource's Template.apply renders it:
        answer_choices rendered and split on ||| into the options (visible as the list
        `answer_choices`), then the source rendered and split on ||| into inputs and targets. No
        options block is appended (the prompt shows what it shows); the target must be an option."""
        if "answer_choices" in variables:
            raise RenderError(f"template {spec.id}: the row has a field named answer_choices, which promptsource's form reserves")
        scope = _guard_pipes(variables)
        scope[DRAWS_VARIABLE] = draws
        options = None
        if prompt.choices is not None:
            options = _split_output(self._render_part(spec, "answer_choices", prompt.choices, scope))
        scope["answer_choices"] = options
        parts = _split_output(self._render_part(spec, "jinja", prompt.source, scope))
        if len(parts) > 2:
            raise RenderError(f"template {spec.id} field jinja: rendered {len(parts) - 1} ||| separators; expected one, between inputs and targets")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            missing = "no ||| separator" if len(parts) < 2 else "empty inputs" if not parts[0] else "an empty target"
            raise PromptSkipped(f"template {spec.id}: {missing} on this row")
        inputs, targets = parts
        if options is None:
            return Rendered(spec.id, "zero_shot", inputs, targets, (), NO_ANSWER)
        if targets not in options:
            raise RenderError(f"template {spec.id} field jinja: target {targets!r} is not one of the answer_choices {options!r}")
        kind = "zero_shot" if spec.show_options else "zero_shot_no_options"
        return Rendered(spec.id, kind, inputs, targets, tuple(options), options.index(targets))

    def _render_part(self, spec: TemplateSpec, field_name: str, compiled: CompiledTemplate, variables: Mapping[str, Any]) -> str:
        try:
            return compiled.render(variables, self.max_chars)
        except Exception as e:  # untrusted template: report, never crash the build
            raise RenderError(f"template {spec.id} field {field_name}: {_failure_text(e)}") from None

    def render(
        self, variables: Mapping[str, Any], template_index: int, show_options: bool | None = None, *, seed: int = 0, example_id: str = ""
    ) -> Rendered:
        """Render one prepared row through one template (`show_options` None: as the template says).
        `seed` and `example_id` seed the `random` and promptsource's `choice` filters (with the task
        and template)."""
        prompt = self._prompts[template_index]
        if prompt is not None:
            spec = self.spec.templates[template_index]
            return self._render_prompt(spec, prompt, variables, SeededDraws(seeded_hash(seed, self.spec.name, example_id, spec.id)))
        spec, compiled_inputs, compiled_targets = self._templates[template_index]
        assert compiled_inputs is not None and compiled_targets is not None
        if compiled_inputs.draws or compiled_targets.draws:  # seeded like a prompt's `choice`; only such templates pay for it
            variables = {**variables, DRAWS_VARIABLE: SeededDraws(seeded_hash(seed, self.spec.name, example_id, spec.id))}
        texts = []
        for field_name, compiled in (("inputs", compiled_inputs), ("targets", compiled_targets)):
            try:
                text = compiled.render(variables, self.max_chars)
            except Exception as e:  # untrusted template: report, never crash the build
                raise RenderError(f"template {spec.id} field {field_name}: {_failure_text(e)}") from None
            if not text:
                raise RenderError(f"template {spec.id} field {field_name}: rendered empty")
            texts.append(text)
        inputs, targets = texts
        options: list[str] = variables.get("options", []) if self.spec.answers is not None else []
        if spec.cot:
            return self._render_cot(spec, variables, inputs, targets, options, show_options)
        if not options or spec.inverted or spec.free_text:
            kind = "inverted" if spec.inverted else "free_text" if spec.free_text else "zero_shot"
            return Rendered(spec.id, kind, inputs, targets, (), NO_ANSWER)
        if targets not in options:
            raise RenderError(f"template {spec.id} field targets: {targets!r} is not one of the options {options!r}")
        if spec.show_options if show_options is None else show_options:
            return Rendered(
                spec.id, "zero_shot", f"{inputs}\n\n{format_options(options)}", targets, tuple(options), options.index(targets)
            )
        return Rendered(spec.id, "zero_shot_no_options", inputs, targets, tuple(options), options.index(targets))


def compile_tasks(specs: Iterable[TaskSpec]) -> dict[str, CompiledTask]:
    """Task name -> its compiled task, compiling each distinct spec once: the tasks one spec becomes
    (a task per NIv2 task file, named apart) share its compiled templates."""
    compiled: dict[str, CompiledTask] = {}
    by_body: dict[str, CompiledTask] = {}
    for spec in specs:
        body = repr(replace(spec, name=""))
        if body not in by_body:
            by_body[body] = CompiledTask(spec)
        compiled[spec.name] = by_body[body].as_task(spec)
    return compiled


@dataclass(frozen=True)
class TemplateMode:
    """Which templates a row goes through: `all`, `round_robin` (one per row, cycling, as the
    FLAN reference code did) or `sample:K` (K per row, chosen by seeded hash)."""

    kind: str
    k: int = 0

    @classmethod
    def parse(cls, text: str) -> "TemplateMode":
        if text in ("all", "round_robin"):
            return cls(text)
        if text.startswith("sample:") and text[7:].isdigit() and int(text[7:]) > 0:
            return cls("sample", int(text[7:]))
        raise ValueError(f"template mode {text!r}: expected all, round_robin or sample:K with K >= 1")

    def __str__(self) -> str:
        return f"sample:{self.k}" if self.kind == "sample" else self.kind

    def select(self, template_ids: tuple[str, ...], *, seed: int, task: str, example_id: str, shard: str, ordinal: int) -> list[int]:
        """Indices of the templates to apply to one row.

        round_robin cycles through the templates in read order within each source shard,
        starting at a seeded offset per shard, so every template gets an equal share to within
        one row per shard, independent of how the read is parallelised.
        """
        n = len(template_ids)
        if self.kind == "all":
            return list(range(n))
        if self.kind == "round_robin":
            return [(ordinal + seeded_hash(seed, task, shard)) % n]
        ranked = sorted(range(n), key=lambda i: seeded_hash(seed, task, example_id, template_ids[i]))
        return sorted(ranked[: self.k])


@dataclass(frozen=True)
class RenderSettings:
    """Every build setting that changes what rendering produces: what a render DoFn takes, and what
    the render cache's fingerprint hashes (caps, formats and shard size act after rendering)."""

    template_mode: str = "all"
    seed: int = 0
    options_variants: str = "template"
    few_shot: int = 0
    few_shot_separator: str = "\n\n"
    demo: bool = False  # samples instead of the real source: different rows

    @property
    def mode(self) -> TemplateMode:
        return TemplateMode.parse(self.template_mode)


class Application(NamedTuple):
    """One render of a row: which template, whether options show (None: as the template says),
    and whether exemplars precede it."""

    template_index: int
    show_options: bool | None = None
    few_shot: bool = False


def plan_applications(
    task: CompiledTask, indices: list[int], *, options_variants: str, evaluation: bool, few_shot: bool = False
) -> list[Application]:
    """The renders one row gets.

    Evaluation rows go through every template with options shown (rank classification needs
    them). With options_variants "both", every template that shows options is also rendered
    without them: the no-options variant is derived here, never written twice in a spec. With
    `few_shot`, each of those renders also gets a variant preceded by exemplars.
    """
    spec = task.spec
    if evaluation:
        return [Application(i, True if spec.answers else None) for i in range(task.n_templates)]
    out: list[Application] = []
    for i in indices:
        out.append(Application(i))
        t = spec.templates[i]
        if options_variants == "both" and spec.answers is not None and t.show_options and not (t.inverted or t.free_text or t.cot):
            out.append(Application(i, False))
    return out + [a._replace(few_shot=True) for a in out] if few_shot else out


def choose_exemplars(pool: list[tuple[str, dict[str, Any]]], *, seed: int, task: str, example_id: str) -> list[dict[str, Any]]:
    """The pool's rows in a seeded order that differs per row, the row itself left out."""
    ranked = sorted((seeded_hash(seed, task, example_id, eid), eid) for eid, _ in pool if eid != example_id)
    rows = dict(pool)
    return [rows[eid] for _, eid in ranked]


def render_few_shot(
    task: CompiledTask,
    variables: Mapping[str, Any],
    app: Application,
    exemplars: Sequence[dict[str, Any]],
    k: int,
    separator: str,
    *,
    seed: int = 0,
    example_id: str = "",
) -> Rendered:
    """The render of `app` preceded by up to k exemplars formatted by the same template."""
    shots: list[str] = []
    for n, raw in enumerate(exemplars):
        if len(shots) == k:
            break
        try:
            prepared = task.prepare(raw)
            if prepared is None or not task.applies(prepared, app.template_index):
                continue
            shot = task.render(prepared, app.template_index, app.show_options, seed=seed, example_id=f"{example_id}#exemplar{n}")
        except (RowError, RenderError):
            continue  # a bad exemplar is skipped; it is not this row's failure
        shots.append(f"{shot.inputs}\n{shot.targets}")
    if not shots:
        raise RenderError(f"template {task.spec.templates[app.template_index].id}: no exemplars available for a few-shot render")
    r = task.render(variables, app.template_index, app.show_options, seed=seed, example_id=example_id)
    kind = r.template_type.replace("zero_shot", "few_shot") if r.template_type.startswith("zero_shot") else f"few_shot_{r.template_type}"
    return Rendered(r.template_id, kind, separator.join([*shots, r.inputs]), r.targets, r.options, r.answer_index)


def make_record(spec: TaskSpec, split: str, example_id: str, r: Rendered) -> Record:
    """The output record (schemas/records.py) for one rendered example."""
    return {
        "inputs": r.inputs,
        "targets": r.targets,
        "task": spec.name,
        "cluster": spec.cluster,
        "collection": spec.collection,
        "template_id": r.template_id,
        "template_type": r.template_type,
        "options": list(r.options),
        "answer_index": r.answer_index,
        "split": split,
        "example_id": example_id,
        "content_hash": content_hash(r.inputs, r.targets),
    }


@dataclass(frozen=True)
class RowOutcome:
    """What became of one row: its records, or why it (or some of its templates) failed."""

    records: list[Record]
    failures: list[str]  # one message per failed template application
    filtered: bool = False
    skipped: int = 0  # applications whose template's own filter excluded the row, or that had no target (PromptSkipped)


def render_row(task: CompiledTask, raw: Mapping[str, Any], **plan: Any) -> RowOutcome:
    """Prepare one row and render it as planned (`plan`: render_prepared's keyword arguments);
    never raises for bad data."""
    try:
        variables = task.prepare(raw)
    except RowError as e:
        return RowOutcome([], [str(e)] * len(plan["applications"]))
    if variables is None:
        return RowOutcome([], [], filtered=True)
    return render_prepared(task, variables, **plan)


def render_prepared(
    task: CompiledTask,
    variables: Mapping[str, Any],
    *,
    split: str,
    example_id: str,
    applications: Sequence[Application],
    exemplars: Sequence[dict[str, Any]] = (),
    few_shot_k: int = 0,
    separator: str = "\n\n",
    seed: int = 0,
) -> RowOutcome:
    """Render a prepared row (`CompiledTask.prepare`) as planned; never raises for bad data.
    `seed` is the build's (it seeds promptsource's `choice` filter)."""
    records, failures, skipped = [], [], 0
    for app in applications:
        try:
            if not task.applies(variables, app.template_index):
                skipped += 1
                continue
            rendered = (
                render_few_shot(task, variables, app, exemplars, few_shot_k, separator, seed=seed, example_id=example_id)
                if app.few_shot
                else task.render(variables, app.template_index, app.show_options, seed=seed, example_id=example_id)
            )
            records.append(make_record(task.spec, split, example_id, rendered))
        except PromptSkipped:
            skipped += 1
        except RenderError as e:
            failures.append(str(e))
    return RowOutcome(records, failures, skipped=skipped)


def iter_sample_problems(task: CompiledTask) -> Iterator[str]:
    """Every problem rendering the spec's own sample rows through every template (for validate).

    Besides errors: two templates that render the same pair on a row (dedup would silently keep
    only one), and inverted templates whose target is just the answer option (not inverted).
    """
    spec = task.spec
    for n, raw in enumerate(spec.samples):
        where = f"{spec.path}: sample #{n + 1}"
        try:
            variables = task.prepare(raw)
        except RowError as e:
            yield f"{where}: {e}"
            continue
        if variables is None:
            continue
        seen: dict[str, str] = {}
        for i, template in enumerate(spec.templates):
            try:
                if not task.applies(variables, i):
                    continue
                r = task.render(variables, i, example_id=f"sample #{n + 1}")
            except PromptSkipped:
                continue
            except RenderError as e:
                yield f"{where}: {e}"
                continue
            h = content_hash(r.inputs, r.targets)
            if h in seen:
                yield f"{where}: template {template.id} renders the same inputs and targets as template {seen[h]}"
            seen.setdefault(h, template.id)
            if (template.inverted or template.free_text) and "options" in variables and r.targets in variables["options"]:
                marked = "inverted" if template.inverted else "free_text"
                yield f"{where}: template {template.id} is marked {marked} but its target {r.targets!r} is an answer option"
