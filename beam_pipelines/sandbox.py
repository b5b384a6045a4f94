"""The Jinja sandbox that task templates and spec expressions run in, bounded in time and memory.

Templates and spec expressions are untrusted (docs/SECURITY.md). Jinja's
ImmutableSandboxedEnvironment already refuses attribute walks (`''.__class__`), mutation of lists
and dicts, unsafe callables and file access (there is no loader). It does not bound what a
template may compute: `'x' * 10**10`, `99 ** 9999999`, `"%0999999999d" % 1`, `lipsum(10**8)` or
nested `range` loops hang a worker or allocate gigabytes, some of them already at compile time.
`BoundedSandbox` adds, through Jinja's documented hooks:

- operators (`intercepted_binops` + `call_binop`): `*`, `+`, `%` and `**` check the size of their
  result before they build it: strings at most MAX_RESULT_CHARS characters, integers at most
  MAX_INT_BITS bits, lists and tuples at most MAX_CONTAINER_WEIGHT (items counted through every
  level of nesting, so shared sub-lists cannot multiply);
- calls (`call`): the growing string methods (`center`, `ljust`, `rjust`, `zfill`, `expandtabs`,
  `replace`, `join`, `translate`, `format`, `format_map`, `int.to_bytes`) are checked the same
  way before they run; every call checks the render's deadline;
- filters and globals: bounded versions of every Jinja filter that can grow its input, a counted
  `range`, no `urlize`; `random` picks by the render's seeded draws (as promptsource's `choice`)
  and `lipsum` (random text) is refused, so that every render is reproducible;
- the code generator (`code_generator_class`): every `for` loop counts its iterations against
  MAX_LOOP_ITERATIONS and checks the deadline; `~` goes through a bounded join; list, tuple and dict
  literals are weighed; filter results and slices are metered; no constant folding
  (`optimized=False`), so nothing is evaluated while a template compiles; output buffers of macros
  and blocks are bounded;
- an allocation allowance: the characters (and list items, ITEM_UNITS each) every operation builds
  in one render add up to at most MAX_RENDER_ALLOCATION, so many bounded statements cannot keep
  many bounded copies;
- `finalize`: a null (None) never prints as the word "None", it fails the render, naming the
  expression; anything else that prints is measured before it is turned into text;
- the time budget: `begin_render` (called by render.py around every render that can repeat
  anything, see `needs_budget`) sets a deadline RENDER_TIME_BUDGET_S ahead in a thread-local;
  loops and calls check it, so it works in the worker threads of Beam's DirectRunner, where
  signals cannot be used;
- compile limits (`compile_template`, `compile_expression`): sources over MAX_SOURCE_CHARS,
  brackets nested deeper than MAX_BRACKET_DEPTH, syntax trees deeper than MAX_TREE_DEPTH and
  integer literals over MAX_INT_LITERAL_DIGITS digits are refused, and whatever Python's own
  compiler raises (RecursionError, MemoryError, SyntaxError, ...) becomes a TemplateSyntaxError.

A render that goes over a bound raises a `SandboxRefusal`, whose message says which bound; render.py
turns it into a dead letter for that row. Nothing here imports Beam.
"""
from __future__ import annotations

import math
import threading
import types
from functools import update_wrapper
from time import perf_counter
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.filters import make_attrgetter
from jinja2.meta import TrackingCodeGenerator
from jinja2.parser import Parser
from jinja2.runtime import LoopContext, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, safe_range
from jinja2.utils import Namespace
from markupsafe import EscapeFormatter, Markup

from flanforge.beam_pipelines.hashing import seeded_hash
from flanforge.beam_pipelines.text_filters import MAX_RESULT_CHARS

# --- the bounds ------------------------------------------------------------------------------

# MAX_RESULT_CHARS (100,000, render.MAX_OUTPUT_CHARS): no operation may build a string longer than
# this, unless the result is no longer than its longest input (so rows longer than the bound still
# pass through non-growing operations such as slicing).
MAX_INT_BITS = 65_536  # integers built by * and ** (Python prints at most 4,300 digits anyway)
MAX_INT_LITERAL_DIGITS = 4_300  # Python's own limit for int(str); longer literals are refused at compile time
MAX_CONTAINER_WEIGHT = 1_000_000  # items of a list/tuple/dict built by a template, through all levels (a string counts 1 + len/16)
MAX_LOOP_ITERATIONS = 1_000_000  # loop iterations in one render, all loops together
MAX_RENDER_ALLOCATION = 10_000_000  # characters of text (and ITEM_UNITS per list item) one render may build, all operations together
ITEM_UNITS = 8  # a list, tuple, dict or set item counts as 8 characters: its reference, and often a new object behind it
MAX_FORMAT_WIDTH = MAX_RESULT_CHARS  # sum of the widths and precisions of one %-format or str.format
RENDER_TIME_BUDGET_S = 1.0  # wall-clock time of one template render or expression evaluation
MAX_SOURCE_CHARS = 20_000  # a template or expression source: 7x the longest real prompt (promptsource's, 2,849); compile time grows with it
MAX_BRACKET_DEPTH = 20  # ( [ { nested in a template or expression
MAX_TREE_DEPTH = 64  # nested nodes of the parsed template (chains of operators, filters, blocks)

_UNLIMITED = 1 << 62
_CHECK_EVERY = 64  # a loop over more items than this checks the deadline every this many items


class SandboxRefusal(SecurityError):
    """The sandbox refused something a template did; the message says what, and is meant for a
    dead letter as it is."""


class TemplateLimitError(SandboxRefusal):
    """An operation would go over one of the sandbox's size bounds."""


class RenderBudgetError(TemplateLimitError):
    """A render went over its time budget or its loop iterations."""


class NullValueError(SandboxRefusal):
    """A null (None) would have been printed as the word None."""


# --- the per-render budget, one per thread ----------------------------------------------------


class _RenderState(threading.local):
    """The running render's deadline and what is left of its iteration and allocation allowances.
    Class attributes are the values outside any render: unlimited."""

    deadline = math.inf
    budget_s = RENDER_TIME_BUDGET_S
    iterations_left = _UNLIMITED
    allocation_left = _UNLIMITED


_STATE = _RenderState()


def begin_render(budget_s: float = RENDER_TIME_BUDGET_S) -> None:
    """Start a render's budget in this thread: its deadline `budget_s` (wall clock) ahead, its
    loop iterations and allocation allowances full. render.py calls it around every render of a
    template or expression that needs it (`needs_budget`), and `end_render` after.

    Beam's DirectRunner renders in threads, where signal-based alarms cannot be used, so the
    deadline lives in a thread-local and is checked by the code a template runs: every loop (at
    its start and every _CHECK_EVERY items), every call, every lazy filter (map, select, ...) and
    every operation that grows text or measures a structure. Between two checks a template can
    only run straight-line code, whose length is bounded by MAX_SOURCE_CHARS and each of whose
    operations is bounded in size, so a render stops soon after its budget runs out."""
    state = _STATE
    state.deadline = perf_counter() + budget_s
    state.budget_s = budget_s
    state.iterations_left = MAX_LOOP_ITERATIONS
    state.allocation_left = MAX_RENDER_ALLOCATION


def end_render() -> None:
    """Back to no render: this thread's budget is unlimited again."""
    _STATE.__dict__.clear()


def _over_budget() -> RenderBudgetError:
    return RenderBudgetError(f"over the {_STATE.budget_s:g} s render budget")


def check_deadline() -> None:
    if perf_counter() > _STATE.deadline:
        raise _over_budget()


def _allocated(size: int) -> None:
    """Count `size` characters or items an operation built against the render's allocation
    allowance. Each single result is bounded; this bounds their number, so that a template of many
    statements (or loop iterations) cannot keep copy upon copy alive."""
    state = _STATE
    left = state.allocation_left - size
    state.allocation_left = left
    if left < 0:
        raise TemplateLimitError(
            f"the render built more than {MAX_RENDER_ALLOCATION} characters of text and lists in all (the sandbox's per-render bound)"
        )


def metered(value: Any) -> Any:
    """`value`, a filter's, call's or slice's result, counted against the allocation allowance
    (text by its characters, a list, tuple, dict or set by ITEM_UNITS per item)."""
    kind = value.__class__
    if kind is str or kind is Markup or kind is bytes:
        _allocated(len(value))
    elif kind is list or kind is tuple or kind is dict or kind is set:
        _allocated(len(value) * ITEM_UNITS)
    return value


def _check_size(size: int, base: int, what: str) -> None:
    """Refuse a result of `size` characters that is longer than MAX_RESULT_CHARS and than `base`,
    the longest input (a row longer than the bound may still go through operations that do not
    make it longer)."""
    if size > MAX_RESULT_CHARS and size > base:
        raise TemplateLimitError(f"{what} would build {size} characters; the sandbox's limit is {MAX_RESULT_CHARS}")


# --- measuring values without expanding them ----------------------------------------------------

_TEXT_KINDS = frozenset({str, bytes, bytearray, Markup})
_SCALAR_KINDS = frozenset({int, float, bool, type(None)})
_VIEW_KINDS = (type({}.keys()), type({}.values()), type({}.items()))


def _contents(v: Any) -> tuple[int, Any] | None:
    """(own weight, children still to weigh) of a container; None for anything else. A flat
    list of scalars or strings is weighed at once (C speed), with no children left."""
    kind = type(v)
    if kind is list or kind is tuple or kind is set or kind is frozenset or isinstance(v, _VIEW_KINDS) or (
        isinstance(v, (list, tuple, set, frozenset)) and not isinstance(v, (str, bytes))
    ):
        kinds = set(map(type, v))
        if kinds <= _SCALAR_KINDS:
            return 1 + len(v), ()
        if kinds <= _TEXT_KINDS:
            return 1 + len(v) + (sum(map(len, v)) >> 4), ()
        return 1, v
    if isinstance(v, dict):
        return 1, [*v, *v.values()]
    if kind is Namespace:
        return 1, list(object.__getattribute__(v, "_Namespace__attrs").values())
    return None


def _leaf_weight(v: Any) -> int:
    return 1 + (len(v) >> 4) if isinstance(v, (str, bytes, bytearray)) else 1


def _weight(value: Any, limit: int) -> int:
    """Items in `value` counted through every level, a shared sub-list once per reference (what
    comparing, hashing or printing it walks); a string counts 1 + len/16. Computed over the
    distinct containers (each weighed once, by identity), so a structure that shares its
    sub-lists and expands exponentially is weighed in time linear in what it holds. Returns
    limit + 1 for anything over `limit` (and for a cycle)."""
    top = _contents(value)
    if top is None:
        return _leaf_weight(value)
    if not top[1]:
        return top[0]  # flat: weighed already
    check_deadline()
    done: dict[int, int] = {}
    waiting: set[int] = set()
    stack = [value]
    while stack:
        node = stack[-1]
        key = id(node)
        if key in done:
            stack.pop()
            continue
        own, children = _contents(node)  # type: ignore[misc]
        total = own
        pending = []
        for child in children:
            weight = done.get(id(child))
            if weight is None:
                if _contents(child) is None:
                    weight = _leaf_weight(child)
                else:
                    pending.append(child)
                    continue
            total += weight
        if pending:
            if key in waiting or any(id(c) in waiting for c in pending):
                return limit + 1  # a cycle
            waiting.add(key)
            stack.extend(pending)
            continue
        if total > limit:
            return limit + 1
        done[key] = total
        waiting.discard(key)
        stack.pop()
    return done[id(value)]


def _printed_size(value: Any, limit: int) -> int:
    """About how many characters str(value) has (repr quotes and separators included, escapes
    not), computed without building it; stops past `limit`."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str or kind is Markup:
            total += len(v) + 2
        elif kind is int or kind is bool:
            total += (v.bit_length() * 77 >> 8) + 2
        elif kind is float or v is None:
            total += 24
        elif kind is list or kind is tuple or kind is set or kind is frozenset or isinstance(v, _VIEW_KINDS):
            total += 14 + 2 * len(v)
            kinds = set(map(type, v))
            if kinds <= _SCALAR_KINDS:
                total += 24 * len(v)
            elif kinds <= _TEXT_KINDS:
                total += sum(map(len, v)) + 3 * len(v)
            else:
                stack.extend(v)
        elif kind is dict:
            total += 2 + 4 * len(v)
            stack.extend(v)
            stack.extend(v.values())
        elif kind is Namespace:
            total += 16
            stack.append(object.__getattribute__(v, "_Namespace__attrs"))
        elif isinstance(v, (str, bytes, bytearray)):
            total += len(v) + 14
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 14 + 2 * len(v)
            stack.extend(v)
        elif isinstance(v, dict):
            total += 14 + 4 * len(v)
            stack.extend(v)
            stack.extend(v.values())
        else:
            total += 80  # an object's own repr (a range, a macro, a loop): short
        if total > limit:
            break
    return total


def check_printable(value: Any, what: str = "printing a value") -> None:
    """Refuse to turn a non-string `value` into text when that text would be longer than
    MAX_RESULT_CHARS (a list that shares its sub-lists can print exponentially long)."""
    check_deadline()
    if _printed_size(value, MAX_RESULT_CHARS) > MAX_RESULT_CHARS:
        raise TemplateLimitError(f"{what}: the value would print as more than {MAX_RESULT_CHARS} characters")


def bounded_container(value: Any) -> Any:
    """A list, tuple or dict a template builds, refused when it weighs over MAX_CONTAINER_WEIGHT."""
    if _weight(value, MAX_CONTAINER_WEIGHT) > MAX_CONTAINER_WEIGHT:
        raise TemplateLimitError(
            f"a {type(value).__name__} built here would hold more than {MAX_CONTAINER_WEIGHT} items counting nested ones "
            "(the sandbox's bound)"
        )
    return value


def short_repr(value: Any, limit: int = 10_000) -> str:
    """repr(value) for an error message, or a placeholder when it would be longer than about
    `limit` characters (measured first, never expanding a huge value)."""
    if _printed_size(value, limit) > limit:
        size = f" of {len(value)} items" if isinstance(value, (list, tuple, dict, set)) else ""
        return f"<a {type(value).__name__}{size} too long to show>"
    return repr(value)


# --- operators -----------------------------------------------------------------------------------


def _int_like(x: Any) -> bool:
    return isinstance(x, int)


def _repeat(seq: Any, times: int) -> Any:
    n = max(times, 0)
    if isinstance(seq, (str, bytes, bytearray)):
        _check_size(len(seq) * n, len(seq), f"'*' repeating a text of {len(seq)} characters {times} times")
    elif isinstance(seq, (list, tuple)):
        if n > 1:
            weight = _weight(seq, MAX_CONTAINER_WEIGHT)
            if weight * n > MAX_CONTAINER_WEIGHT:
                raise TemplateLimitError(
                    f"'*' repeating a {type(seq).__name__} {times} times would hold more than {MAX_CONTAINER_WEIGHT} items "
                    "counting nested ones (the sandbox's bound)"
                )
    _allocated(len(seq) * n * (1 if isinstance(seq, (str, bytes, bytearray)) else ITEM_UNITS))
    return seq * times


def _mul(left: Any, right: Any) -> Any:
    if type(left) is int and type(right) is int:
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"'*' would build an integer of more than {MAX_INT_BITS} bits")
        return left * right
    if _int_like(right) and isinstance(left, (str, bytes, bytearray, list, tuple)):
        return _repeat(left, right)
    if _int_like(left) and isinstance(right, (str, bytes, bytearray, list, tuple)):
        return _repeat(right, left)
    if _int_like(left) and _int_like(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"'*' would build an integer of more than {MAX_INT_BITS} bits")
    return left * right


def _pow(base: Any, exponent: Any) -> Any:
    if _int_like(base) and _int_like(exponent) and exponent > 0 and base not in (0, 1, -1):
        try:
            bits = exponent * math.log2(abs(base))
        except OverflowError:
            bits = math.inf
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(f"'**' would build an integer of about {bits:.3g} bits; the sandbox's limit is {MAX_INT_BITS}")
    return base**exponent


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, (str, bytes, bytearray)) and isinstance(right, (str, bytes, bytearray)):
        a, b = len(left), len(right)
        _check_size(a + b, max(a, b), "'+'")
        _allocated(a + b)
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        if _weight(left, MAX_CONTAINER_WEIGHT) + _weight(right, MAX_CONTAINER_WEIGHT) > MAX_CONTAINER_WEIGHT:
            raise TemplateLimitError(
                f"'+' would build a {type(left).__name__} of more than {MAX_CONTAINER_WEIGHT} items counting nested ones "
                "(the sandbox's bound)"
            )
        _allocated((len(left) + len(right)) * ITEM_UNITS)
    return left + right


def _printf_fields(fmt: str) -> int:
    """The sum of the widths and precisions in a printf-style format; refuses `*` widths and any
    width or precision that alone exceeds MAX_FORMAT_WIDTH."""
    total = 0
    n = len(fmt)
    i = fmt.find("%")
    while i != -1:
        j = i + 1
        if j < n and fmt[j] == "(":  # a mapping key, which may hold balanced parentheses
            depth = 1
            j += 1
            while j < n and depth:
                depth += {"(": 1, ")": -1}.get(fmt[j], 0)
                j += 1
        while j < n and fmt[j] in "-#0 +":
            j += 1
        for part in ("width", "precision"):
            if part == "precision":
                if j < n and fmt[j] == ".":
                    j += 1
                else:
                    break
            start = j
            if j < n and fmt[j] == "*":
                raise TemplateLimitError(f"'%' format {fmt[i:j + 1]!r}: '*' widths and precisions are not allowed in the sandbox")
            while j < n and fmt[j] in "0123456789":
                j += 1
            digits = fmt[start:j]
            if digits:
                if len(digits) > 9 or int(digits) > MAX_FORMAT_WIDTH:
                    raise TemplateLimitError(
                        f"'%' format with a {part} of {digits[:12]}{'…' if len(digits) > 12 else ''}; "
                        f"the sandbox's limit is {MAX_FORMAT_WIDTH}"
                    )
                total += int(digits)
        i = fmt.find("%", j + 1)
    return total


def bounded_printf(fmt: Any, args: Any) -> Any:
    """`fmt % args` for text, with widths, precisions and the printed arguments measured first."""
    text = fmt.decode("latin-1") if isinstance(fmt, (bytes, bytearray)) else fmt
    widths = _printf_fields(text)
    if widths > MAX_FORMAT_WIDTH:
        raise TemplateLimitError(f"'%' format whose widths and precisions add up to {widths}; the sandbox's limit is {MAX_FORMAT_WIDTH}")
    if not isinstance(args, str):
        check_printable(args, "'%' format arguments")
    result = fmt % args
    _check_size(len(result), len(fmt) if isinstance(args, (tuple, dict)) else max(len(fmt), _text_len(args)), "'%' format")
    _allocated(len(result))
    return result


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, bytearray)) else 0


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, (str, bytes, bytearray)):
        return bounded_printf(left, right)
    return left % right


# --- str.format / format_map ------------------------------------------------------------------------


class _BoundedFormatter(SandboxedFormatter):
    """Jinja's sandboxed `str.format` with each field's width and precision bounded and the text
    built so far counted."""

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._built = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None and not isinstance(value, str):
            check_printable(value, "str.format argument")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        widths = 0
        digits = ""
        for ch in format_spec + " ":
            if ch in "0123456789":
                digits += ch
                if len(digits) > 9:
                    break
            elif digits:
                widths += int(digits)
                digits = ""
        if digits or widths > MAX_FORMAT_WIDTH:
            raise TemplateLimitError(f"str.format field {{:{format_spec[:20]}}}: widths over the sandbox's limit of {MAX_FORMAT_WIDTH}")
        if not isinstance(value, str):
            check_printable(value, "str.format argument")
        text = super().format_field(value, format_spec)
        self._built += len(text)
        if self._built > MAX_RESULT_CHARS:
            raise TemplateLimitError(f"str.format would build more than {MAX_RESULT_CHARS} characters (the sandbox's limit)")
        return text


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


# --- filters ------------------------------------------------------------------------------------------

_NULL_HINT = "test it ({% if x is none %}) or give a default (x | default('...', true))"


def _text_input(value: Any, name: str) -> Any:
    """What a text filter may work on: a null is refused (Jinja would turn it into the text
    "None"), anything that is not a string is measured before it is turned into text."""
    if value is None:
        raise NullValueError(f"filter {name} got a null value (None); {_NULL_HINT}")
    if not isinstance(value, str):
        check_printable(value, f"filter {name}")
    return value


def _wrap(original: Callable[..., Any], replacement: Callable[..., Any]) -> Callable[..., Any]:
    """`replacement` with `original`'s name, docs and Jinja pass_* marker."""
    update_wrapper(replacement, original)
    return replacement


def _text_filter(name: str, growth: bool = False) -> Callable[..., Any]:
    """Jinja's filter `name` with null refusal (and, with `growth`, its result's size bounded)."""
    original = JINJA_FILTERS[name]
    passes = getattr(original, "jinja_pass_arg", None) is not None

    if passes:

        def guarded(first: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(first, _text_input(value, name), *args, **kwargs)
            if growth:
                _check_size(len(result), _text_len(value), f"filter {name}")
            return result

    else:

        def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(_text_input(value, name), *args, **kwargs)
            if growth:
                _check_size(len(result), _text_len(value), f"filter {name}")
            return result

    return _wrap(original, guarded)


def _trim(value: Any, chars: str | None = None) -> Any:
    if value.__class__ is str:
        return value.strip(chars)
    return JINJA_FILTERS["trim"](_text_input(value, "trim"), chars)


def _lower(value: Any) -> Any:
    if value.__class__ is str:
        return value.lower()
    return JINJA_FILTERS["lower"](_text_input(value, "lower"))


def _upper(value: Any) -> Any:
    if value.__class__ is str:
        return value.upper()
    return JINJA_FILTERS["upper"](_text_input(value, "upper"))


def _string(value: Any) -> Any:
    if value.__class__ is str:
        return value
    return JINJA_FILTERS["string"](_text_input(value, "string"))


def _center(value: Any, width: int = 80) -> Any:
    text = _text_input(value, "center")
    if isinstance(width, int):
        _check_size(width, len(str(text)) if isinstance(text, str) else 0, f"filter center({width})")
    return JINJA_FILTERS["center"](text, width)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    text = _text_input(s, "indent")
    text_len = len(text) if isinstance(text, str) else 0
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if step > MAX_RESULT_CHARS:
        raise TemplateLimitError(f"filter indent({width if isinstance(width, int) else '...'}): over the sandbox's limit of {MAX_RESULT_CHARS}")
    lines = (text.count("\n") + 1) if isinstance(text, str) else 1
    _check_size(text_len + lines * step, text_len, "filter indent")
    return JINJA_FILTERS["indent"](text, width, first, blank)


def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> Any:
    text = _text_input(s, "replace")
    if not isinstance(old, str):
        check_printable(old, "filter replace")
    if not isinstance(new, str):
        check_printable(new, "filter replace")
    whole, old_text, new_text = str(text), str(old), str(new)
    hits = whole.count(old_text) if old_text else len(whole) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    extra = len(new_text) * (6 if eval_ctx.autoescape else 1) - len(old_text)
    _check_size(len(whole) + hits * extra, len(whole), "filter replace")
    if not eval_ctx.autoescape and count is None:
        return whole.replace(old_text, new_text)
    return JINJA_FILTERS["replace"](eval_ctx, text, old, new, count)


def _format(value: Any, *args: Any, **kwargs: Any) -> Any:
    text = _text_input(value, "format")
    if args and kwargs:
        return JINJA_FILTERS["format"](text, *args, **kwargs)  # Jinja's own error
    return bounded_printf(str(text), kwargs or args)


def _join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    separator = d if isinstance(d, str) else str(d)
    parts: list[Any] = []
    total = longest = 0
    for item in value:
        if item.__class__ is not str:
            if item is None:
                raise NullValueError(f"filter join got a null item (None); {_NULL_HINT}")
            if not isinstance(item, str):
                check_printable(item, "filter join")
                if not eval_ctx.autoescape or not hasattr(item, "__html__"):
                    item = str(item)
        size = len(item)
        total += size + (len(separator) if parts else 0)
        longest = max(longest, size)
        if total > MAX_RESULT_CHARS and total > longest:
            raise TemplateLimitError(f"filter join would build more than {MAX_RESULT_CHARS} characters (the sandbox's limit)")
        parts.append(item)
    _check_size(total, longest, "filter join")
    if not eval_ctx.autoescape:
        return separator.join(parts)
    return JINJA_FILTERS["join"](eval_ctx, parts, d)


def _wordwrap(environment: Any, s: Any, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None, break_on_hyphens: bool = True) -> Any:
    text = _text_input(s, "wordwrap")
    joiner = environment.newline_sequence if wrapstring is None else wrapstring
    if isinstance(text, str) and isinstance(width, int) and width >= 1:
        lines = len(text) // width + text.count("\n") + 1
        _check_size(len(text) + lines * len(str(joiner)), len(text), "filter wordwrap")
    return JINJA_FILTERS["wordwrap"](environment, text, width, break_long_words, wrapstring, break_on_hyphens)


def _measured(name: str) -> Callable[..., Any]:
    """A filter that prints a structure (tojson, pprint, xmlattr): the structure is measured
    before, the text after."""
    original = JINJA_FILTERS[name]
    passes = getattr(original, "jinja_pass_arg", None) is not None

    def check(value: Any, args: tuple[Any, ...]) -> None:
        check_printable(value, f"filter {name}")
        if name == "tojson" and args:
            indent = args[0]
            if (isinstance(indent, int) and indent > 16) or (isinstance(indent, str) and len(indent) > 16):
                raise TemplateLimitError("filter tojson: indent is at most 16 in the sandbox")

    if passes:

        def guarded(first: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            check(value, args + tuple(kwargs.values()))
            result = original(first, value, *args, **kwargs)
            _check_size(len(result), 0, f"filter {name}")
            return result

    else:

        def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
            check(value, args + tuple(kwargs.values()))
            result = original(value, *args, **kwargs)
            _check_size(len(result), 0, f"filter {name}")
            return result

    return _wrap(original, guarded)


def _metered_lists(lists: Iterable[Any]) -> Iterator[Any]:
    """The lists a lazy filter (batch, slice) builds, each counted as it comes."""
    for items in lists:
        _allocated(len(items) * ITEM_UNITS)
        yield items


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None and isinstance(linecount, int) and _weight(fill_with, MAX_CONTAINER_WEIGHT) * linecount > MAX_CONTAINER_WEIGHT:
        raise TemplateLimitError(f"filter batch({linecount}, ...) would fill more than {MAX_CONTAINER_WEIGHT} items (the sandbox's bound)")
    return _metered_lists(JINJA_FILTERS["batch"](value, linecount, fill_with))


def _slice(eval_ctx: Any, value: Any, slices: int, fill_with: Any = None) -> Any:
    fill = _weight(fill_with, MAX_CONTAINER_WEIGHT) if fill_with is not None else 1
    if isinstance(slices, int) and slices * fill > MAX_CONTAINER_WEIGHT:
        raise TemplateLimitError(f"filter slice({slices}): more than {MAX_CONTAINER_WEIGHT} items in its slices (the sandbox's bound)")
    return _metered_lists(JINJA_FILTERS["slice"](eval_ctx, value, slices, fill_with))


def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    if isinstance(start, (list, tuple)) or any(isinstance(i, (list, tuple)) for i in items):
        if _weight(items, MAX_CONTAINER_WEIGHT) + _weight(start, MAX_CONTAINER_WEIGHT) > MAX_CONTAINER_WEIGHT:
            raise TemplateLimitError(f"filter sum would build a list of more than {MAX_CONTAINER_WEIGHT} items (the sandbox's bound)")
    return JINJA_FILTERS["sum"](environment, items, attribute, start)


def _timed_items(items: Iterable[Any], built: bool) -> Iterator[Any]:
    """The items of a lazy filter (map, select, ...), the deadline checked every _CHECK_EVERY and,
    when the filter `built` them (map runs a filter per item), each counted."""
    n = 0
    for item in items:
        n += 1
        if n == _CHECK_EVERY:
            n = 0
            if perf_counter() > _STATE.deadline:
                raise _over_budget()
        if built:
            metered(item)
        yield item


def _lazy_filter(name: str) -> Callable[..., Any]:
    """Jinja's map, select, reject, selectattr or rejectattr, checking the deadline as it goes
    (each item may run a filter or test)."""
    original = JINJA_FILTERS[name]
    built = name == "map"

    def guarded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return _timed_items(original(context, value, *args, **kwargs), built)

    return _wrap(original, guarded)


def _groupby(environment: Any, value: Any, attribute: Any, default: Any = None, case_sensitive: bool = False) -> Any:
    groups = JINJA_FILTERS["groupby"](environment, value, attribute, default, case_sensitive)
    _allocated((len(groups) + sum(len(group.list) for group in groups)) * ITEM_UNITS)
    return groups


def _bounded_filters() -> dict[str, Callable[..., Any]]:
    from jinja2.utils import pass_environment, pass_eval_context

    filters: dict[str, Callable[..., Any]] = {
        "trim": _wrap(JINJA_FILTERS["trim"], _trim),
        "lower": _wrap(JINJA_FILTERS["lower"], _lower),
        "upper": _wrap(JINJA_FILTERS["upper"], _upper),
        "string": _wrap(JINJA_FILTERS["string"], _string),
        "center": _wrap(JINJA_FILTERS["center"], _center),
        "indent": _wrap(JINJA_FILTERS["indent"], _indent),
        "replace": pass_eval_context(_wrap(JINJA_FILTERS["replace"], _replace)),
        "format": _wrap(JINJA_FILTERS["format"], _format),
        "join": pass_eval_context(_wrap(JINJA_FILTERS["join"], _join)),
        "wordwrap": pass_environment(_wrap(JINJA_FILTERS["wordwrap"], _wordwrap)),
        "batch": _wrap(JINJA_FILTERS["batch"], _batch),
        "slice": pass_eval_context(_wrap(JINJA_FILTERS["slice"], _slice)),
        "sum": pass_environment(_wrap(JINJA_FILTERS["sum"], _sum)),
        "groupby": pass_environment(_wrap(JINJA_FILTERS["groupby"], _groupby)),
    }
    for name in ("capitalize", "title", "striptags", "wordcount", "truncate"):
        filters[name] = _text_filter(name)
    for name in ("escape", "e", "forceescape", "urlencode"):
        filters[name] = _text_filter(name, growth=True)
    for name in ("tojson", "pprint", "xmlattr"):
        filters[name] = _measured(name)
    for name in ("map", "select", "reject", "selectattr", "rejectattr"):
        filters[name] = _lazy_filter(name)
    return filters


# filters whose results the code generator does not meter: small values, lazy iterators over
# existing items, or filters that count what they build themselves
UNMETERED_FILTERS = frozenset(
    "abs attr count d default filesizeformat first float int items last length max min random round unique wordcount "
    "map select reject selectattr rejectattr batch slice groupby choice".split()
)
# filters that run something per item (a filter, a test) or meter as they go: like loops, they
# make a template need a budget
ITERATING_FILTERS = frozenset("map select reject selectattr rejectattr batch slice groupby most_frequent".split())


# --- promptsource's filters (its templates use them; docs/PROMPTSOURCE.md) ---------------------------

DRAWS_VARIABLE = "flanforge:draws"  # not a name a template can write: only the `choice` filter reads it


class SeededDraws:
    """The picks of promptsource's `choice` filter in one render: the n-th pick's index is
    seeded_hash(key, n) modulo the length, so a render's picks are a fixed function of its key
    (render.py derives it from the build seed, the task, the example and the template), and no
    global random state is read or changed."""

    __slots__ = ("key", "drawn")

    def __init__(self, key: int):
        self.key = key
        self.drawn = 0

    def index(self, size: int) -> int:
        pick = seeded_hash(self.key, str(self.drawn)) % size
        self.drawn += 1
        return pick


def _seeded_pick(name: str) -> Callable[..., Any]:
    """A filter picking one item of a sequence by the render's SeededDraws: promptsource's
    `choice` (random.choice there) and Jinja's own `random` (which reads Python's global random
    state, so a build using it would not be reproducible)."""

    @jinja2.pass_context
    def pick(context: Any, seq: Any) -> Any:
        draws = context.get(DRAWS_VARIABLE)
        if draws is None:
            raise SandboxRefusal(f"filter {name}: this render has no seed (a spec expression cannot draw; use it in a template)")
        if not hasattr(seq, "__getitem__") or not hasattr(seq, "__len__"):
            raise TypeError(f"filter {name} needs a list, got {type(seq).__name__}")
        if len(seq) == 0:
            raise IndexError(f"filter {name}: cannot choose from an empty sequence")
        return seq[draws.index(len(seq))]

    return pick


seeded_choice = _seeded_pick("choice")
DRAWING_FILTERS = frozenset({"choice", "random"})  # a template using one gets a SeededDraws per render


def draws(ast: nodes.Node) -> bool:
    """Whether a template picks with a seeded filter, so its render needs a SeededDraws."""
    return any(f.name in DRAWING_FILTERS for f in ast.find_all(nodes.Filter))


def most_frequent(items: Any) -> list[Any] | None:
    """promptsource's `most_frequent`: the items that occur most often, in order of first
    occurrence (None for an empty input, as promptsource returns), the deadline checked as it counts."""
    if not items:
        return None
    counts: dict[Any, int] = {}
    for item in _timed_items(items, built=False):
        counts[item] = counts.get(item, 0) + 1
    top = max(counts.values())
    return [item for item, n in counts.items() if n == top]


PROMPTSOURCE_FILTERS: dict[str, Callable[..., Any]] = {"choice": seeded_choice, "most_frequent": most_frequent}


def bounded_range(*args: int) -> range:
    """Jinja's sandboxed `range` (at most jinja2.sandbox.MAX_RANGE items), its length counted."""
    made = safe_range(*args)
    _allocated(len(made) * ITEM_UNITS)
    return made


def refused_lipsum(*args: Any, **kwargs: Any) -> str:
    """Jinja's `lipsum` writes random text from Python's global random state: a build that used it
    could not be reproduced, so the sandbox refuses it (a template needing filler text writes it)."""
    raise SandboxRefusal("lipsum writes random text, which would make the build non-reproducible; write the text in the template")


# --- string methods reached through calls -----------------------------------------------------------


def _width_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = args[0] if args else kwargs.get("width")
    if isinstance(width, int):
        _check_size(width, len(owner), f"{type(owner).__name__}.{name}({width})")


def _expandtabs_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    tabsize = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(tabsize, int) and tabsize > 1:
        tab = "\t" if isinstance(owner, str) else b"\t"
        _check_size(len(owner) + owner.count(tab) * tabsize, len(owner), f"{type(owner).__name__}.expandtabs({tabsize})")


def _replace_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(args) < 2:
        return
    old, new = args[0], args[1]
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    try:
        hits = owner.count(old) if len(old) else len(owner) + 1
        extra = len(new) - len(old)
    except TypeError:
        return  # the call itself raises the right error
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _check_size(len(owner) + hits * extra, len(owner), f"{type(owner).__name__}.replace")


def _translate_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    table = args[0] if args else None
    if not isinstance(owner, str) or not isinstance(table, dict):
        return  # bytes tables map a byte to a byte; other tables map to one character
    if len(table) <= 256:
        extra = 0
        for key, to in table.items():
            if isinstance(to, str) and len(to) > 1:
                extra += owner.count(chr(key) if isinstance(key, int) and 0 <= key < 0x110000 else str(key)) * (len(to) - 1)
        size = len(owner) + extra
    else:
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        size = len(owner) * max(longest, 1)
    _check_size(size, len(owner), "str.translate")


def _join_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if not args:
        return args
    items = []
    total = longest = 0
    for item in args[0]:
        size = len(item) if isinstance(item, (str, bytes, bytearray)) else 0
        total += size + (len(owner) if items else 0)
        longest = max(longest, size)
        if total > MAX_RESULT_CHARS and total > longest:
            raise TemplateLimitError(f"{type(owner).__name__}.join would build more than {MAX_RESULT_CHARS} characters (the sandbox's limit)")
        items.append(item)
    _check_size(total, longest, f"{type(owner).__name__}.join")
    return (items,) + args[1:]


_TEXT_METHOD_CHECKS: dict[str, Callable[..., Any]] = {
    "center": _width_method,
    "ljust": _width_method,
    "rjust": _width_method,
    "zfill": _width_method,
    "expandtabs": _expandtabs_method,
    "replace": _replace_method,
    "translate": _translate_method,
    "join": _join_method,
}


# --- the code generator -------------------------------------------------------------------------------


def _is_constant(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return all(_is_constant(item) for item in node.items)
    if isinstance(node, nodes.Dict):
        return all(_is_constant(pair.key) and _is_constant(pair.value) for pair in node.items)
    return False


def _describe(node: nodes.Node) -> str | None:
    """A short source-like name for an output expression (`label`, `row.title`, `x['k']`)."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        inner = _describe(node.node)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _describe(node.node)
        return f"{inner}[{node.arg.value!r}]" if inner else None
    if isinstance(node, nodes.Filter) and node.node is not None:
        inner = _describe(node.node)
        return f"{inner} | {node.name}" if inner else None
    return None


def tree_depth(root: nodes.Node) -> tuple[int, int]:
    """(depth, line) of the deepest node under `root`, walked without recursion."""
    deepest, line = 0, 1
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest, line = depth, getattr(node, "lineno", line) or line
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest, line


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with the sandbox's bounds compiled in: loops guarded, `~` bounded,
    literals weighed, filter results and slices metered, output buffers bounded, nothing folded
    at compile time."""

    def __init__(self, environment: Any, name: Any, filename: Any, stream: Any = None, defer_init: bool = False, optimized: bool = True):
        super().__init__(environment, name, filename, stream, defer_init, optimized=False)

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        depth, line = tree_depth(node)
        if depth > MAX_TREE_DEPTH:
            self.fail(f"the template nests {depth} levels deep; the sandbox's limit is {MAX_TREE_DEPTH}", line)
        # the iterables of `for` loops: visit() hands them through environment.guard_loop (Jinja
        # allows no custom node types, so they are recognised by identity)
        self._loop_iterables = {id(loop.iter) for loop in node.find_all(nodes.For)}
        self._metering = needs_budget(node)  # a template that repeats nothing is not metered (see needs_budget)
        super().visit_Template(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) in getattr(self, "_loop_iterables", ()):
            self.write("environment.guard_loop(")
            result = super().visit(node, *args, **kwargs)
            self.write(")")
            return result
        return super().visit(node, *args, **kwargs)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:
        if node.name in UNMETERED_FILTERS or not self._metering:
            super().visit_Filter(node, frame)
            return
        self.write("environment.metered(")
        super().visit_Filter(node, frame)
        self.write(")")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice) or not self._metering:  # a slice copies: x[1:]
            super().visit_Getitem(node, frame)
            return
        self.write("environment.metered(")
        super().visit_Getitem(node, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            self.write("environment.join_markup((")
        else:
            self.write("environment.join_text((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _bounded_literal(self, visit: Callable[[Any, Frame], None], node: nodes.Node, frame: Frame) -> None:
        if _is_constant(node) or getattr(node, "ctx", "load") != "load":
            visit(node, frame)
            return
        self.write("environment.bounded_container(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._bounded_literal(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._bounded_literal(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._bounded_literal(super().visit_Dict, node, frame)

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # Only literal text and literal constants are finalized while compiling: anything else
        # (a filter over constants, say) would run template code at compile time.
        if not isinstance(node, (nodes.TemplateData, nodes.Const)):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    # Every `{{ }}` output goes through environment.finalize, with the expression's name and line
    # (for the null message). Text, nearly every output, skips the call: the generated code tests
    # `value.__class__ is str` inline, which is cheaper than the str() Jinja itself writes.

    def _plain_output(self, frame: Frame, finalize: Any) -> bool:
        return finalize.src == "environment.finalize(" and not frame.eval_ctx.volatile and not frame.eval_ctx.autoescape

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._plain_output(frame, finalize):
            self.write("(_ff_text if (_ff_text := ")
        else:
            super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if finalize.src != "environment.finalize(":
            super()._output_child_post(node, frame, finalize)
            return
        where = f"{_describe(node)!r}, {node.lineno!r}"
        if self._plain_output(frame, finalize):
            self.write(f").__class__ is str else str(environment.finalize(_ff_text, {where})))")
        else:
            self.write(f", {where}))")


class _VariableTracker(TrackingCodeGenerator, BoundedCodeGenerator):
    """jinja2.meta's undeclared-variable finder, without constant folding."""


def undeclared_variables(ast: nodes.Template) -> frozenset[str]:
    tracker = _VariableTracker(ast.environment)  # type: ignore[attr-defined]
    tracker.visit(ast)
    return frozenset(tracker.undeclared_identifiers)


# --- the environment --------------------------------------------------------------------------------


def finalize(value: Any, what: str | None = None, line: int = 0) -> Any:
    """Jinja's finalize hook: every `{{ }}` output passes here. Text passes as it is; a null is
    an error (it would print the word None); a structure is measured before it is printed."""
    if value.__class__ is str:
        return value
    if value is None:
        raise NullValueError(null_message(what, line))
    if not isinstance(value, (str, int, float)):
        check_printable(value, "printing a value")
    return value


def null_message(what: str | None, line: int = 0) -> str:
    if what:
        return f"{what!r} is null; test it ({{% if {what} is none %}}) or give a default ({what} | default('...', true))"
    where = f" on line {line}" if line else ""
    return f"a value printed{where} is null (None); {_NULL_HINT}"


class _OutputBuffer(list):
    """The output buffer of a macro, call or filter block or block assignment, bounded like the
    render's own output."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def append(self, text: Any) -> None:
        self.size += len(text)
        if self.size > MAX_RESULT_CHARS:
            raise TemplateLimitError(f"a macro or block would write more than {MAX_RESULT_CHARS} characters (the sandbox's limit)")
        list.append(self, text)

    def extend(self, texts: Iterable[Any]) -> None:
        for text in texts:
            self.append(text)


def _concat(parts: Iterable[Any]) -> str:
    """`Environment.concat`: joins buffers and rendered chunks, at most MAX_RESULT_CHARS of them."""
    if isinstance(parts, list):
        if sum(map(len, parts)) > MAX_RESULT_CHARS:
            raise TemplateLimitError(f"output longer than {MAX_RESULT_CHARS} characters (the sandbox's limit)")
        return "".join(parts)
    kept = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_RESULT_CHARS:
            raise TemplateLimitError(f"output longer than {MAX_RESULT_CHARS} characters (the sandbox's limit)")
        kept.append(part)
    return "".join(kept)


def _checked_parts(values: Iterable[Any]) -> tuple[list[Any], int]:
    parts = []
    total = longest = 0
    for v in values:
        if v.__class__ is not str:
            if v is None:
                raise NullValueError(f"'~' joins a null value (None); {_NULL_HINT}")
            if not isinstance(v, str):
                check_printable(v, "'~'")
                v = str(v)
        size = len(v)
        total += size
        if size > longest:
            longest = size
        parts.append(v)
    _check_size(total, longest, "'~'")
    _allocated(total)
    return parts, total


def join_text(values: tuple[Any, ...]) -> str:
    """The `~` operator: Jinja's str_join, refusing nulls and results over MAX_RESULT_CHARS."""
    return "".join(_checked_parts(values)[0])


def join_markup(values: tuple[Any, ...]) -> Any:
    """The `~` operator with autoescaping on."""
    parts, _ = _checked_parts(values)
    result = markup_join(parts)  # escaping can make it up to six times longer
    if len(result) > MAX_RESULT_CHARS:
        raise TemplateLimitError(f"'~' would build {len(result)} characters; the sandbox's limit is {MAX_RESULT_CHARS}")
    return result


def _count_items(iterable: Iterable[Any], state: _RenderState, sized: bool) -> Iterator[Any]:
    n = 0
    for item in iterable:
        n += 1
        if n == _CHECK_EVERY:
            n = 0
            if not sized:
                state.iterations_left -= _CHECK_EVERY
                if state.iterations_left < 0:
                    raise _too_many_iterations()
            if perf_counter() > state.deadline:
                raise _over_budget()
        yield item
    if not sized:
        state.iterations_left -= n
        if state.iterations_left < 0:
            raise _too_many_iterations()


class _CheckedLoop:
    """A sized iterable handed to a loop: its length stays available (loop.length, loop.last),
    its items come through _count_items (the deadline checked every _CHECK_EVERY)."""

    __slots__ = ("items", "state")

    def __init__(self, items: Any, state: _RenderState):
        self.items = items
        self.state = state

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        return _count_items(self.items, self.state, sized=True)


def _too_many_iterations() -> RenderBudgetError:
    return RenderBudgetError(f"more than {MAX_LOOP_ITERATIONS} loop iterations in one render (the sandbox's bound)")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's ImmutableSandboxedEnvironment, bounded in time and memory (see the module docs)."""

    code_generator_class = BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_concat)  # type: ignore[assignment]

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", finalize)
        options["optimized"] = False  # no constant folding: nothing a template says runs while it compiles
        super().__init__(**options)
        self.binop_table = {**self.binop_table, "*": _mul, "**": _pow, "%": _mod, "+": _add}
        self.globals["lipsum"] = refused_lipsum
        self.filters["random"] = _seeded_pick("random")
        self.globals["range"] = bounded_range
        self.filters.update(_bounded_filters())
        del self.filters["urlize"]  # HTML only; its growth depends on arguments in ways not worth bounding

    # hooks the generated code calls
    metered = staticmethod(metered)
    output_buffer = staticmethod(_OutputBuffer)
    join_text = staticmethod(join_text)
    join_markup = staticmethod(join_markup)
    bounded_container = staticmethod(bounded_container)

    @staticmethod
    def guard_loop(iterable: Any) -> Any:
        state = _STATE
        try:
            n = len(iterable)
        except TypeError:
            return _count_items(iterable, state, sized=False)
        left = state.iterations_left - n
        state.iterations_left = left
        if left < 0:
            raise _too_many_iterations()
        if perf_counter() > state.deadline:
            raise _over_budget()
        return _CheckedLoop(iterable, state) if n > _CHECK_EVERY else iterable

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        """Every call a template makes (methods, globals, macros): the deadline checked, growing
        string methods checked before they run, and what the call returns measured."""
        if perf_counter() > _STATE.deadline:
            raise _over_budget()
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{short_repr(__obj)} is not safely callable")
        owner = getattr(__obj, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, (str, bytes, bytearray)):
                check = _TEXT_METHOD_CHECKS.get(name)
                if check is not None:
                    args = check(owner, name, args, kwargs) or args
                result = __context.call(__obj, *args, **kwargs)
                if isinstance(result, (str, bytes, bytearray)):
                    _check_size(len(result), len(owner), f"{type(owner).__name__}.{name}")
                return metered(result)
            if isinstance(owner, int) and name == "to_bytes":
                length = args[0] if args else kwargs.get("length", 1)
                if isinstance(length, int) and length > MAX_RESULT_CHARS:
                    raise TemplateLimitError(f"int.to_bytes({length}): over the sandbox's limit of {MAX_RESULT_CHARS}")
            elif name == "fromkeys":  # dict.fromkeys(keys, value): one value, many references
                return metered(bounded_container(__context.call(__obj, *args, **kwargs)))
        elif __obj is dict:  # the `dict` global: dict(a=x, b=x)
            return metered(bounded_container(__context.call(__obj, *args, **kwargs)))
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop's loop(children)
            args = (__self.guard_loop(args[0]),) + args[1:]
        return metered(__context.call(__obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in ("format", "format_map"):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        kind = type(owner)
        format_map = value.__name__ == "format_map"
        formatter: _BoundedFormatter = (
            _BoundedEscapeFormatter(self, escape=owner.escape) if isinstance(owner, Markup) else _BoundedFormatter(self)
        )

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                args, kwargs = (), args[0]
            result = kind(formatter.vformat(owner, args, kwargs))
            _check_size(len(result), len(owner), f"str.{value.__name__}")
            return result  # measured by `call`

        return update_wrapper(bounded_format, value)


# --- compiling -----------------------------------------------------------------------------------------

_COMPILE_FAILURES = (RecursionError, MemoryError, SyntaxError, ValueError, OverflowError)


def _failure(e: BaseException) -> TemplateSyntaxError:
    if isinstance(e, RecursionError):
        message = "nested too deeply to compile (Python's recursion limit)"
    elif isinstance(e, MemoryError):
        message = "too large to compile (out of memory)"
    elif isinstance(e, SyntaxError):  # Python's compiler: too many nested blocks, parentheses or indentation levels
        message = f"nested too deeply to compile ({e.msg})"
    else:
        message = f"cannot compile: {type(e).__name__}: {str(e)[:200]}"
    return TemplateSyntaxError(message, 0)


def check_source(env: jinja2.Environment, source: str, state: str | None = None) -> None:
    """Refuse, as a TemplateSyntaxError, a source over MAX_SOURCE_CHARS, brackets nested deeper than
    MAX_BRACKET_DEPTH and integer literals over MAX_INT_LITERAL_DIGITS digits, reading only tokens
    (before the recursive parser sees the source)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSyntaxError(f"the source is {len(source)} characters long; the sandbox's limit is {MAX_SOURCE_CHARS}", 0)
    depth = 0
    for lineno, token, value in env.lexer.tokeniter(source, None, state=state):
        if token == "operator":
            if value in "([{":
                depth += 1
                if depth > MAX_BRACKET_DEPTH:
                    raise TemplateSyntaxError(f"brackets nested more than {MAX_BRACKET_DEPTH} deep (the sandbox's limit)", lineno)
            elif value in ")]}":
                depth -= 1
        elif token == "integer" and len(value) - value.count("_") > MAX_INT_LITERAL_DIGITS:
            raise TemplateSyntaxError(
                f"an integer literal of {len(value) - value.count('_')} digits; the sandbox's limit is {MAX_INT_LITERAL_DIGITS}", lineno
            )


class Compiled(NamedTuple):
    """A compiled template or expression: the Jinja template, the variables it reads from its
    context (templates only) and whether rendering it needs begin_render (see needs_budget)."""

    template: jinja2.Template
    variables: frozenset[str]
    budgeted: bool
    draws: bool = False  # picks with `random`/`choice`: each render needs a SeededDraws in its context


def compile_template(env: jinja2.Environment, source: str) -> Compiled:
    """A template compiled within the sandbox's compile limits. Every failure is a
    TemplateSyntaxError (lineno 0 when no line applies)."""
    try:
        check_source(env, source)
        ast = env.parse(source)
        variables = undeclared_variables(ast)
        return Compiled(env.from_string(ast), variables, needs_budget(ast), draws(ast))
    except TemplateSyntaxError:
        raise
    except _COMPILE_FAILURES as e:
        raise _failure(e) from None


def compile_expression(env: jinja2.Environment, source: str) -> Compiled:
    """A spec expression compiled as `env.compile_expression(source, undefined_to_none=False)`
    does (its value is the template's variable `result`), within the compile limits."""
    try:
        check_source(env, source, state="variable")
        parser = Parser(env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
        expr.set_environment(env)
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        return Compiled(env.from_string(nodes.Template(body, lineno=1)), frozenset(), needs_budget(expr))
    except TemplateSyntaxError:
        raise
    except _COMPILE_FAILURES as e:
        raise _failure(e) from None


MAX_UNBUDGETED_SITES = 8  # operations that build something, in a template that repeats nothing


def needs_budget(ast: nodes.Node) -> bool:
    """Whether rendering `ast` needs the per-render budget (begin_render).

    Only loops, calls (methods, globals, macros, `loop()`) and filters that iterate can run a
    piece of template code more than once. A template with none of them runs each of its
    operations at most once, and each is bounded on its own; with at most MAX_UNBUDGETED_SITES
    operations that build something (filters, `~`, `+`, `*`, `%`, `**`, slices) it can build
    no more than MAX_UNBUDGETED_SITES times the largest result, far inside the allowance, in
    microseconds. Such a template (SST-2's, and most) renders with no budget and no metering:
    it costs nothing."""
    sites = 0
    for node in [ast, *ast.find_all(nodes.Node)]:
        if isinstance(node, (nodes.For, nodes.Call, nodes.Macro, nodes.CallBlock)):
            return True
        if isinstance(node, nodes.Filter):
            if node.name in ITERATING_FILTERS:
                return True
            sites += node.name not in UNMETERED_FILTERS
        elif isinstance(node, (nodes.Concat, nodes.Add, nodes.Mul, nodes.Mod, nodes.Pow)):
            sites += 1
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
            sites += 1
    return sites > MAX_UNBUDGETED_SITES
