"""The text-cleaning template filters (beam_pipelines/text_filters.py): each function on its own,
and through make_environment(), which is what every task template renders with."""
from __future__ import annotations

import time

import jinja2
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from flanforge.beam_pipelines import render, text_filters
from flanforge.beam_pipelines.catalog import parse_task_spec
from flanforge.beam_pipelines.render import Application, CompiledTask, make_environment, render_row
from flanforge.beam_pipelines.text_filters import (
    MAX_RESULT_CHARS,
    TEXT_FILTERS,
    TextFilterError,
    detokenize,
    normalize_space,
    regex_replace,
    unescape_html,
)

AG_NEWS = (
    "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, "
    "Wall Street #39;s dwindling\\band of ultra-cynics, are seeing green again."
)
AG_NEWS_CLEAN = (
    "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, "
    "Wall Street's dwindling band of ultra-cynics, are seeing green again."
)


def render_string(source: str, **variables: object) -> str:
    return make_environment().from_string(source).render(**variables)


# --- registration and shared rules -------------------------------------------------------------


def test_every_filter_is_registered_in_the_template_environment() -> None:
    env = make_environment()
    for name, function in TEXT_FILTERS.items():
        assert env.filters[name] is function
    assert set(TEXT_FILTERS) == {"unescape_html", "normalize_space", "detokenize", "regex_replace"}


def test_result_limit_is_the_renderers_output_limit() -> None:
    assert MAX_RESULT_CHARS == render.MAX_OUTPUT_CHARS


@pytest.mark.parametrize("name", sorted(TEXT_FILTERS))
@pytest.mark.parametrize("value", [None, 5, 2.5, ["a"], {"a": 1}])
def test_non_strings_raise_a_clear_error(name: str, value: object) -> None:
    args = ("a", "b") if name == "regex_replace" else ()
    with pytest.raises(TypeError, match=rf"^{name}: expected a string, got {'None' if value is None else type(value).__name__}"):
        TEXT_FILTERS[name](value, *args)


@pytest.mark.parametrize("name", sorted(TEXT_FILTERS))
def test_none_in_a_template_is_an_error_not_the_text_none(name: str) -> None:
    args = "('a', 'b')" if name == "regex_replace" else ""
    with pytest.raises(TypeError, match=f"{name}: expected a string, got None"):
        render_string(f"{{{{ x | {name}{args} }}}}", x=None)
    with pytest.raises(jinja2.UndefinedError, match="'missing' is undefined"):
        render_string(f"{{{{ missing | {name}{args} }}}}")


@pytest.mark.parametrize("name", sorted(TEXT_FILTERS))
def test_results_are_plain_strings(name: str) -> None:
    args = ("a", "b") if name == "regex_replace" else ()
    out = TEXT_FILTERS[name](Markup("a &amp; b"), *args)
    assert type(out) is str


def test_a_failing_filter_is_a_failed_render_not_a_crash() -> None:
    spec = parse_task_spec(
        {
            "name": "t",
            "cluster": "nli",
            "description": "d",
            "license": "l",
            "metric": "accuracy",
            "source": {"kind": "jsonl", "splits": {"train": "x.jsonl"}},
            "samples": [{"a": "x", "label": "y"}],
            "templates": [
                {"id": "ok", "inputs": "{{ a | unescape_html | normalize_space }}", "targets": "{{ label | regex_replace('y', 'z') }}"},
                {"id": "slow", "inputs": "{{ a | regex_replace('(a|aa)+$', '') }}", "targets": "{{ label }}"},
            ],
        },
        "t.yaml",
    )
    task = CompiledTask(spec)
    started = time.monotonic()
    outcome = render_row(task, {"a": "It&apos;s\u00a0" + "a" * 40 + "b", "label": "y"}, split="train", example_id="e",
                         applications=[Application(0), Application(1)])
    assert time.monotonic() - started < 2
    assert [(r["inputs"], r["targets"]) for r in outcome.records] == [("It's " + "a" * 40 + "b", "z")]
    [failure] = outcome.failures
    assert failure.startswith("template slow field inputs: TextFilterError: regex_replace: pattern '(a|aa)+$' took longer than")


# --- unescape_html -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It&apos;s", "It's"),
        ("It&#39;s &#x27;quoted&#x27;", "It's 'quoted'"),
        ("&quot;Hi&quot; &amp; &lt;b&gt;bye&lt;/b&gt;", '"Hi" & <b>bye</b>'),
        ("a&nbsp;b", "a\u00a0b"),
        ("caf&eacute; &euro;5", "café €5"),
        ("no entities here", "no entities here"),
    ],
)
def test_unescape_html_entities(text: str, expected: str) -> None:
    assert unescape_html(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # AG News: the '&' became a space, which goes with the residue
        ("Wall Street #39;s dwindling", "Wall Street's dwindling"),
        ("BHP Billiton, the world #39;s biggest", "BHP Billiton, the world's biggest"),
        ("for his  quot;Gyro-Gen, quot; a machine", 'for his "Gyro-Gen," a machine'),
        ("shares fell  #36;1.50 to  #36;20", "shares fell $1.50 to $20"),
        ("AT amp;T", "AT&T"),
        ("Street#39;s", "Street's"),
        ("quot;Hello quot;", '"Hello"'),
        # an '&' before the space keeps the space
        ("Tom &amp; #36;5", "Tom & $5"),
    ],
)
def test_unescape_html_repairs_documented_residue(text: str, expected: str) -> None:
    assert unescape_html(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Issue #39 is closed",  # '#' and digits without ';'
        "issues #3639; and #139; and #40;",  # other numbers
        "summer camp; then quotes; quot",  # word endings, and no ';'
        "#39 #36 quot amp",
    ],
)
def test_unescape_html_leaves_look_alikes_alone(text: str) -> None:
    assert unescape_html(text) == text


def test_unescape_html_is_one_pass_and_residue_can_be_switched_off() -> None:
    assert unescape_html("&amp;#39; &amp;quot;") == "&#39; &quot;"  # double-escaped: one level per call
    assert unescape_html(unescape_html("&amp;#39; &amp;quot;")) == "' \""
    assert unescape_html("Street #39;s &amp; quot;x", residue=False) == "Street #39;s & quot;x"
    with pytest.raises(TypeError, match="unescape_html: residue must be true or false"):
        unescape_html("x", residue="no")


def test_ag_news_text_through_a_template() -> None:
    # The backslash AG News leaves where a line broke is not HTML: regex_replace turns it into a
    # space, as docs/FILTERS.md shows, and normalize_space tidies the result.
    source = r"{{ text | unescape_html | regex_replace('\\\\', ' ') | normalize_space }}"
    assert render_string(source, text=AG_NEWS) == AG_NEWS_CLEAN
    assert render_string(source, text="Sales rose to \\$5 billion") == "Sales rose to $5 billion"
    assert render_string("{{ t | unescape_html }}", t="It&apos;s") == "It's"


# --- normalize_space ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a\u00a0b", "a b"),  # NBSP
        ("12\u202f000\u2007km", "12 000 km"),  # narrow and figure no-break spaces
        ("\u200fhello\u200e world\u200f", "hello world"),  # RLM / LRM
        ("\u202bembedded\u202c \u2067isolate\u2069", "embedded isolate"),
        ("zero\u200bwidth\u200c\u200djoin\ufeff", "zerowidthjoin"),
        ("  tabs\tand\nnew\r\nlines\u2028here  ", "tabs and new lines here"),
        ("ideographic\u3000space \u2003em\u2009thin", "ideographic space em thin"),
        (" \u00a0\u200b\t\n", ""),
        ("already clean", "already clean"),
    ],
)
def test_normalize_space(text: str, expected: str) -> None:
    assert normalize_space(text) == expected


def test_normalize_space_keeping_newlines() -> None:
    text = "\n\n  first \u00a0line\u200f  \r\n\r\n\n\nsecond\tline\u2028third\n \n"
    assert normalize_space(text, keep_newlines=True) == "first line\n\nsecond line\nthird"
    assert normalize_space(text) == "first line second line third"
    assert render_string("{{ t | normalize_space(keep_newlines=true) }}", t="a \n\n\n b") == "a\n\nb"
    with pytest.raises(TypeError, match="normalize_space: keep_newlines must be true or false"):
        normalize_space("x", keep_newlines="yes")


SPACEY = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1f\x85\u00a0\u1680\u2007\u2028\u2029\u202f\u3000ab")),
        st.sampled_from(list(text_filters.INVISIBLE_CHARS)),
        st.characters(),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(SPACEY, st.booleans())
def test_normalize_space_is_idempotent_and_leaves_single_spaces(text: str, keep_newlines: bool) -> None:
    out = normalize_space(text, keep_newlines=keep_newlines)
    assert normalize_space(out, keep_newlines=keep_newlines) == out
    assert "  " not in out
    assert out == out.strip()
    assert not any(c.isspace() and c not in " \n" for c in out)
    assert not any(c in text_filters.INVISIBLE_CHARS for c in out)
    if keep_newlines:
        assert "\n\n\n" not in out and " \n" not in out and "\n " not in out
    else:
        assert "\n" not in out
    # nothing but whitespace and invisible characters is removed, and nothing is reordered
    assert "".join(out.split()) == "".join(c for c in text if not c.isspace() and c not in text_filters.INVISIBLE_CHARS)


# --- detokenize --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('He said , " it is n\'t ( really ) so . "', 'He said, "it isn\'t (really) so."'),
        ("I do n't know .", "I don't know."),
        ("I ca n't and wo n't !", "I can't and won't!"),
        ("DO N'T", "DON'T"),
        ("( a )", "(a)"),
        ("-LRB- a -RRB- and -LSB- b -RSB-", "(a) and [b]"),
        ("`` Hello , '' she said .", '"Hello," she said.'),
        ("` quoted ' word", "'quoted' word"),
        ("Wall Street 's shares rose 5 % to $ 10 .", "Wall Street's shares rose 5% to $10."),
        ("the Jones ' house", "the Jones' house"),
        ("state @-@ of @-@ the @-@ art", "state-of-the-art"),
        ("AT &amp; T &apos;s", "AT & T's"),  # the escapes Moses' tokenizer writes
        ("one line .\ntwo  lines ?", "one line.\ntwo lines?"),
        ("", ""),
    ],
)
def test_detokenize_english(text: str, expected: str) -> None:
    assert detokenize(text) == expected


def test_detokenize_other_languages_and_the_cache() -> None:
    assert detokenize('Bonjour , il a dit : " oui ! "', "fr") == 'Bonjour, il a dit : "oui !"'
    assert detokenize("l' homme est là .", lang="fr") == "l'homme est là."
    assert text_filters._detokenizer("fr") is text_filters._detokenizer("fr")
    assert render_string("{{ t | detokenize('fr') }}", t="Oui !") == "Oui !"
    assert render_string("{{ t | detokenize }}", t="Yes !") == "Yes!"


@pytest.mark.parametrize("lang", ["EN", "eng", "e", "../../etc/passwd", "en/", "", 1, None])
def test_detokenize_refuses_anything_but_a_two_letter_code(lang: object) -> None:
    with pytest.raises(TextFilterError, match="detokenize: language must be a two-letter lowercase code"):
        detokenize("a .", lang)  # type: ignore[arg-type]


# --- regex_replace -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, pattern, replacement, count, expected",
    [
        ("a1b22c333", r"\d+", "#", 0, "a#b#c#"),
        ("a1b22c333", r"\d+", "#", 2, "a#b#c333"),
        ("2024-01-31", r"(\d+)-(\d+)-(\d+)", r"\3/\2/\1", 0, "31/01/2024"),
        ("John Smith", r"(?P<first>\w+) (?P<last>\w+)", r"\g<last>, \g<first>", 0, "Smith, John"),
        ("x", r"x", r"[\g<0>\g<0>]", 0, "[xx]"),
        ("abxd", r"x*", "-", 0, "-a-b--d-"),  # empty matches, as regex.sub does them
        ("tabs\there", r"\t", r"\n", 0, "tabs\nhere"),
        ("no match", r"\d", "#", 0, "no match"),
        ("Café", r"(?i)CAFÉ", "bar", 0, "bar"),
        ("(a) or (b)", r"(a)|(b)", r"<\1\2>", 0, "(<a>) or (<b>)"),  # an unmatched group is empty
    ],
)
def test_regex_replace(text: str, pattern: str, replacement: str, count: int, expected: str) -> None:
    assert regex_replace(text, pattern, replacement, count) == expected


def test_regex_replace_in_a_template() -> None:
    assert render_string("{{ t | regex_replace('\\\\s*\\\\(Reuters\\\\)', '') }}", t="Bears (Reuters) Reuters") == "Bears Reuters"
    assert render_string("{{ t | regex_replace('o', '0', count=1) }}", t="foo") == "f0o"


@settings(max_examples=200)
@given(
    st.text(alphabet="ab c\n1", max_size=40),
    st.sampled_from([r"a", r"a*", r"(a)|(b)", r"(?P<x>a+)(b?)", r"\b", r"(?=(a+))", r"(c)?\d", r"$", r"(a|b)+?", r"(?V1)a*|\b"]),
    st.sampled_from(["", "-", r"<\1>", r"\g<0>\g<0>", r"[\g<0>]\n", r"\1\1\1"]),
    st.integers(0, 3),
)
def test_regex_replace_equals_regex_sub(text: str, pattern: str, replacement: str, count: int) -> None:
    if "\\1" in replacement and regex.compile(pattern).groups == 0:
        # regex.sub only notices the missing group when something matches; regex_replace always does
        with pytest.raises(TextFilterError, match="bad replacement .* no such group"):
            regex_replace(text, pattern, replacement, count)
        return
    assert regex_replace(text, pattern, replacement, count) == regex.sub(pattern, replacement, text, count=count)


@pytest.mark.parametrize(
    "pattern, replacement, message",
    [
        ("(unclosed", "x", r"regex_replace: bad pattern '\(unclosed': missing \)"),
        ("[z-a]", "x", "regex_replace: bad pattern"),
        ("(a)", r"\2", r"regex_replace: bad replacement '\\\\2' for pattern '\(a\)': no such group"),
        ("(a)", r"\g<name>", "regex_replace: bad replacement .* unknown group"),
        ("(a)", r"\q", r"regex_replace: bad replacement .* bad escape"),
        ("a" * 501, "x", "regex_replace: the pattern is 501 characters long; the limit is 500"),
        ("a", "x" * 501, "regex_replace: the replacement is 501 characters long; the limit is 500"),
        ("(?:a{1000}){1000}", "x", r"regex_replace: the counted repeats .* multiply to more than 10000"),
        ("(?:x{65535}){65535}", "x", r"regex_replace: the counted repeats"),
        ("(?r)a", "x", r"regex_replace: pattern '\(\?r\)a' searches in reverse"),
    ],
)
def test_regex_replace_refuses_bad_arguments_before_matching(pattern: str, replacement: str, message: str) -> None:
    with pytest.raises(TextFilterError, match=message):
        regex_replace("no match here", pattern, replacement)  # refused even where nothing would match


def test_regex_replace_bad_count() -> None:
    for count in (-1, True, 1.5, "2"):
        with pytest.raises(TypeError, match="regex_replace: count must be a whole number"):
            regex_replace("a", "a", "b", count)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="regex_replace: pattern and replacement must be strings"):
        regex_replace("a", 1, "b")  # type: ignore[arg-type]


@pytest.mark.parametrize("pattern", [r"(a|aa)+$", r"(a|a)+$"])
@pytest.mark.parametrize("n", [40, 5000])
def test_catastrophic_backtracking_times_out_fast(pattern: str, n: int) -> None:
    started = time.monotonic()
    with pytest.raises(TextFilterError, match=rf"regex_replace: pattern .* took longer than 0.1 s on a text of {n + 1} characters"):
        regex_replace("a" * n + "b", pattern, "")
    assert time.monotonic() - started < 1.5


def test_nested_quantifier_classic_finishes_fast() -> None:
    # (a+)+$ is the textbook catastrophic pattern; `regex` recognises it and answers at once,
    # where Python's re would run for hours.
    started = time.monotonic()
    assert regex_replace("a" * 40 + "b", r"(a+)+$", "X") == "a" * 40 + "b"
    assert time.monotonic() - started < 1.5


def test_regex_replace_result_is_bounded() -> None:
    text = "a" * MAX_RESULT_CHARS
    assert regex_replace(text, "b", "c") == text  # exactly at the limit is fine
    assert regex_replace(text, "a$", "b") == "a" * (MAX_RESULT_CHARS - 1) + "b"
    with pytest.raises(TextFilterError, match=f"regex_replace: the result would be longer than {MAX_RESULT_CHARS} characters"):
        regex_replace(text, "a$", "bb")
    with pytest.raises(TextFilterError, match="the result would be longer"):
        regex_replace("x" * 1000, "", "y" * 200)
    # One match whose expansion alone would be 500x the text is refused before it is built.
    with pytest.raises(TextFilterError, match="the result would be longer"):
        regex_replace("a" * 1000, r"(?=(a+))", r"\1" * 250, count=1)
