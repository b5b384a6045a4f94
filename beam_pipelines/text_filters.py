"""Text-cleaning Jinja filters for task templates: `unescape_html`, `normalize_space`, `detokenize`
and `regex_replace` (docs/FILTERS.md describes each exactly).

Why these exist: real datasets arrive with HTML entity residue (AG News writes `Wall Street #39;s`),
odd whitespace (non-breaking spaces, zero-width and bidirectional marks) and Penn-Treebank/Moses
tokenized text (`do n't`, `( a )`). Template authors used to undo that with long chains of
`replace()`, each task a little differently. These filters do it once, the same way everywhere.

Templates are untrusted (render.py renders them in Jinja's sandbox), so every filter here is a pure,
deterministic function that checks its arguments and fails with an error naming itself:
- input must be a string: anything else, None and numbers included, raises TypeError (convert a
  number explicitly with `|string`); an undefined variable raises Jinja's own UndefinedError;
- `regex_replace` bounds the pattern's length and counted repeats, the time spent matching
  (`regex`'s per-call timeout: catastrophic backtracking cannot hang a worker) and the length of
  its result, which is never built when it would be longer than render.py's MAX_OUTPUT_CHARS;
- `detokenize` only accepts two-letter language codes and reads no files.
"""
from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from typing import Any, Callable

import jinja2
import regex

# render.MAX_OUTPUT_CHARS (render.py imports this module, so it cannot be imported from there);
# tests/beam_pipelines/test_text_filters.py checks that the two agree.
MAX_RESULT_CHARS = 100_000
REGEX_TIMEOUT_S = 0.1  # matching time allowed to one regex_replace call
MAX_PATTERN_CHARS = 500
MAX_REPLACEMENT_CHARS = 500
# `regex` unrolls counted repeats when it compiles a pattern: (?:a{1000}){1000} takes half a second
# and (?:x{65535}){65535} exhausts memory, before any timeout applies. So the product of every
# {n}, {n,}, {n,m} and {,m} bound in a pattern, nested or not, may not exceed this.
MAX_REPEAT_PRODUCT = 10_000
PATTERN_CACHE_SIZE = 256


class TextFilterError(ValueError):
    """A text filter got an argument it cannot use; the message starts with the filter's name."""


def _text(value: Any, name: str) -> str:
    """`value` as a plain str, or a clear error: filters never render None or a number by accident."""
    if isinstance(value, str):
        return str(value)  # a str subclass (Markup) becomes a plain str
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if value is None:
        raise TypeError(f"{name}: expected a string, got None")
    raise TypeError(f"{name}: expected a string, got {type(value).__name__} (convert it with |string first)")


# --- unescape_html ----------------------------------------------------------------------------

# Entity residue whose '&' was lost. Corpora such as AG News decoded text once and then turned the
# remaining '&' into a space, so `Wall Street&#39;s` reads `Wall Street #39;s`: one space right
# before the residue stands for the lost '&' and goes with it, unless an '&' comes right before
# that space (`Tom & #36;5` keeps it). Residue right after an '&' is an entity, left as it is (one
# html.unescape pass turns a double-escaped `&amp;#39;` into `&#39;`); `quot;` and `amp;` right
# after a letter or digit end a word (`camp;`) and are left alone too.
_RESIDUE = {"#39;": "'", "#36;": "$", "quot;": '"', "amp;": "&"}
_RESIDUE_RE = re.compile(r"(?<!&) ?(#39;|#36;)|(?:(?<!&) |(?<![&\w]))(quot;|amp;)")


def unescape_html(value: Any, residue: bool = True) -> str:
    """HTML entities to characters (`&amp;` `&apos;` `&#39;` `&quot;` `&nbsp;` ..., one pass of the
    standard library's `html.unescape`), then, unless `residue` is false, the residue forms
    `#39;` -> `'`, `#36;` -> `$`, `quot;` -> `"` and `amp;` -> `&` (see _RESIDUE_RE)."""
    text = html.unescape(_text(value, "unescape_html"))
    if not isinstance(residue, bool):
        raise TypeError(f"unescape_html: residue must be true or false, got {residue!r}")
    if residue:
        text = _RESIDUE_RE.sub(lambda m: _RESIDUE[m.group(1) or m.group(2)], text)
    return text


# --- normalize_space --------------------------------------------------------------------------

# Invisible characters that are removed outright: zero-width (space, non-joiner, joiner, word
# joiner, BOM / zero-width no-break space) and bidirectional marks, embeddings, overrides and
# isolates (ALM U+061C, LRM U+200E, RLM U+200F, U+202A-U+202E, U+2066-U+2069).
INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff" "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_DROP_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE_CHARS))


def normalize_space(value: Any, keep_newlines: bool = False) -> str:
    """Remove INVISIBLE_CHARS; turn every whitespace character (exactly those of `str.isspace`:
    space, tab, line breaks, no-break spaces U+00A0 U+2007 U+202F and every other Unicode space
    separator) into one space, collapsing runs; strip both ends.

    With `keep_newlines`, line breaks (those of `str.splitlines`, CRLF counting as one) become
    `\\n` instead; each line is collapsed and stripped on its own, runs of blank lines become one
    blank line, and blank lines at either end go. Idempotent either way."""
    text = _text(value, "normalize_space").translate(_DROP_INVISIBLE)
    if not isinstance(keep_newlines, bool):
        raise TypeError(f"normalize_space: keep_newlines must be true or false, got {keep_newlines!r}")
    if not keep_newlines:
        return " ".join(text.split())
    lines: list[str] = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


# --- detokenize -------------------------------------------------------------------------------

# Penn-Treebank spellings that the Moses detokenizer does not know, mapped to what it does know
# before it runs: PTB quotes and bracket names become plain quotes and brackets, and the split-off
# negation "n't" rejoins the word before it ("do n't" -> "don't", "ca n't" -> "can't").
_PTB_TOKENS = {"``": '"', "''": '"', "`": "'", "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_LANG_RE = re.compile(r"[a-z]{2}")
_DETOKENIZERS: dict[str, Any] = {}  # language code -> sacremoses.MosesDetokenizer, at most 26 * 26


def _detokenizer(lang: str) -> Any:
    detokenizer = _DETOKENIZERS.get(lang)
    if detokenizer is None:
        # Imported on first use: sacremoses compiles large character classes at import (~0.7 s),
        # which templates that never detokenize should not pay for.
        from sacremoses import MosesDetokenizer

        detokenizer = _DETOKENIZERS[lang] = MosesDetokenizer(lang=lang)
    return detokenizer


def _ptb_to_moses(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        token = _PTB_TOKENS.get(token, token)
        if token.lower() == "n't" and out:
            out[-1] += token
        else:
            out.append(token)
    return out


def detokenize(value: Any, lang: str = "en") -> str:
    """Undo Penn-Treebank / Moses tokenization with sacremoses' MosesDetokenizer for `lang` (a
    two-letter code such as "en", "fr", "de"), line by line: `word .` -> `word.`, `( a )` -> `(a)`,
    `it 's` -> `it's`, `$ 5` -> `$5`, `a @-@ b` -> `a-b`, paired quotes attached, the XML escapes
    Moses' tokenizer writes (`&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#124;` `&#91;` `&#93;`)
    unescaped, and the PTB forms of _PTB_TOKENS mapped first. Whitespace within a line collapses
    to one space; line breaks are kept as `\\n`."""
    text = _text(value, "detokenize")
    if not isinstance(lang, str) or not _LANG_RE.fullmatch(lang):
        raise TextFilterError(f"detokenize: language must be a two-letter lowercase code such as 'en', got {lang!r}")
    detokenizer = _detokenizer(lang)
    return "\n".join(detokenizer.detokenize(_ptb_to_moses(line.split())) for line in text.split("\n"))


# --- regex_replace ----------------------------------------------------------------------------

_COUNTED_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


@dataclass(frozen=True)
class _Substitution:
    """A compiled pattern with its replacement checked and measured: the replacement expands to
    `literal_chars` plus, for each (group, times) in `group_refs`, that group's text `times` times."""

    pattern: Any  # regex.Pattern
    replacement: str
    literal_chars: int
    group_refs: tuple[tuple[int, int], ...]

    def expanded_chars(self, match: Any) -> int:
        return self.literal_chars + sum(times * (match.end(g) - match.start(g)) for g, times in self.group_refs)


def _check_repeats(pattern: str) -> None:
    product = 1
    for low, high in _COUNTED_REPEAT.findall(pattern):
        product *= max(int(low or 0), int(high or 0), 1)
        if product > MAX_REPEAT_PRODUCT:
            raise TextFilterError(
                f"regex_replace: the counted repeats ({{n}}, {{n,m}}) of pattern {pattern!r} multiply to more than "
                f"{MAX_REPEAT_PRODUCT}; use + or * instead of large counts"
            )


def _measure(pattern: Any, replacement: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    """How long `replacement` expands, as literal characters plus references per group.

    The replacement is expanded against a probe pattern with the same group numbers and names as
    `pattern`, each group matching only its own marker character: with no group text it gives the
    literal length; with one group's text one character long, that group's reference count. A
    replacement naming a group the pattern lacks, or with a bad escape, fails here, before any
    match, whatever the text."""
    names = {number: name for name, number in pattern.groupindex.items()}
    groups = "".join(
        f"(?P<{names[i]}>{chr(0x100 + i)}*)" if i in names else f"({chr(0x100 + i)}*)" for i in range(1, pattern.groups + 1)
    )
    probe = regex.compile("\xff?" + groups)

    def chars(text: str) -> int:
        return len(probe.fullmatch(text).expand(replacement))

    literal = chars("")
    whole = chars("\xff") - literal  # group 0 only
    refs = [(0, whole)] + [(i, chars(chr(0x100 + i)) - literal - whole) for i in range(1, pattern.groups + 1)]
    return literal, tuple((g, times) for g, times in refs if times)


@functools.lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _substitution(pattern: str, replacement: str) -> _Substitution:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise TextFilterError(f"regex_replace: the pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_CHARS}")
    if len(replacement) > MAX_REPLACEMENT_CHARS:
        raise TextFilterError(
            f"regex_replace: the replacement is {len(replacement)} characters long; the limit is {MAX_REPLACEMENT_CHARS}"
        )
    _check_repeats(pattern)
    try:
        compiled = regex.compile(pattern)
    except (regex.error, OverflowError, ValueError, TypeError) as e:
        raise TextFilterError(f"regex_replace: bad pattern {pattern!r}: {e}") from None
    if compiled.flags & regex.REVERSE:  # matches would come last first, which the bounded build below cannot take
        raise TextFilterError(f"regex_replace: pattern {pattern!r} searches in reverse ((?r)), which is not supported")
    try:
        literal, refs = _measure(compiled, replacement)
    except (regex.error, IndexError, ValueError) as e:
        raise TextFilterError(f"regex_replace: bad replacement {replacement!r} for pattern {pattern!r}: {e}") from None
    return _Substitution(compiled, replacement, literal, refs)


def regex_replace(value: Any, pattern: str, replacement: str, count: int = 0) -> str:
    """Replace matches of `pattern` (the `regex` module's syntax, a superset of Python's `re`) with
    `replacement` (`\\1`, `\\g<1>`, `\\g<name>` insert groups; `\\g<0>` the whole match), the first
    `count` matches only when `count` > 0. Raises TextFilterError for a pattern over
    MAX_PATTERN_CHARS, a bad or reverse-searching pattern, a replacement that refers to a group
    the pattern lacks, more than REGEX_TIMEOUT_S of matching, or a result over MAX_RESULT_CHARS
    characters."""
    text = _text(value, "regex_replace")
    if not isinstance(pattern, str) or not isinstance(replacement, str):
        raise TypeError(
            f"regex_replace: pattern and replacement must be strings, got {type(pattern).__name__} and {type(replacement).__name__}"
        )
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise TypeError(f"regex_replace: count must be a whole number >= 0, got {count!r}")
    sub = _substitution(pattern, replacement)
    parts: list[str] = []
    size = last = n = 0
    try:
        # The timeout covers the whole iteration (all the matching this call does), not each match.
        for match in sub.pattern.finditer(text, timeout=REGEX_TIMEOUT_S):
            start, end = match.span()
            size += start - last + sub.expanded_chars(match)
            if size > MAX_RESULT_CHARS:
                break
            parts.append(text[last:start])
            parts.append(match.expand(replacement))
            last = end
            n += 1
            if n == count:
                break
    except TimeoutError:
        raise TextFilterError(
            f"regex_replace: pattern {pattern!r} took longer than {REGEX_TIMEOUT_S} s on a text of {len(text)} characters "
            "(catastrophic backtracking?); simplify the pattern"
        ) from None
    size += len(text) - last
    if size > MAX_RESULT_CHARS:
        raise TextFilterError(f"regex_replace: the result would be longer than {MAX_RESULT_CHARS} characters")
    parts.append(text[last:])
    return "".join(parts)


TEXT_FILTERS: dict[str, Callable[..., str]] = {
    "unescape_html": unescape_html,
    "normalize_space": normalize_space,
    "detokenize": detokenize,
    "regex_replace": regex_replace,
}
