"""The pure parts of the studio: rewriting a spec's templates with its layout kept, and placing a
template syntax error by column."""
from __future__ import annotations

import textwrap

import jinja2
import pytest
import yaml

from flanforge.beam_pipelines.render import make_environment
from flanforge.beam_pipelines.studio.positions import error_column
from flanforge.beam_pipelines.studio.yaml_roundtrip import RoundTripError, SpecDocument, TemplateEdit
from flanforge.templates import TEMPLATES_DIR

HAND_WRITTEN = textwrap.dedent(
    """\
    # A spec laid out by hand: sequences not indented, comments everywhere.
    name: toy
    templates:
    # first the plain ones
    - id: toy_01   # the classic
      inputs: 'Say {{ x }}'
      targets: "{{ y }}"
      inverted: false
    - id: toy_02
      inputs: |-
        Two lines
        {{ x }}
      targets: "{{ y }}"
    samples:
    - {x: a, y: b}
    """
)


def edits_of(text: str) -> list[TemplateEdit]:
    return [TemplateEdit(t, origin=i) for i, t in enumerate(yaml.safe_load(text)["templates"])]


# Bundled specs of different make: comments in and around templates (rte, arc_challenge), samples
# whose long lines and lists ruamel would lay out differently (aqua_rat), other clusters' styles.
# (All of them pass; pure-Python ruamel takes ~0.2 s a file, so the test keeps to these.)
@pytest.mark.parametrize("spec", ["nli/rte", "closed_book_qa/arc_challenge", "cot/aqua_rat", "cot/esnli", "niv2/niv2", "sentiment/sst2"])
def test_bundled_specs_are_written_back_byte_for_byte(spec):
    path = TEMPLATES_DIR / f"{spec}.yaml"
    text = path.read_text()
    assert SpecDocument(text, str(path)).with_templates(edits_of(text)) == text


def test_an_edit_changes_its_lines_only_in_the_files_own_style():
    document = SpecDocument(HAND_WRITTEN, "toy.yaml")
    edits = edits_of(HAND_WRITTEN)
    assert document.with_templates(edits) == HAND_WRITTEN
    edits[0] = TemplateEdit({**edits[0].values, "inputs": "Please say {{ x }}"}, origin=0)
    edits[1] = TemplateEdit({**edits[1].values, "inverted": True}, origin=1)
    out = document.with_templates(edits)
    assert out == HAND_WRITTEN.replace("'Say {{ x }}'", "'Please say {{ x }}'").replace(
        '  targets: "{{ y }}"\nsamples:', '  targets: "{{ y }}"\n  inverted: true\nsamples:'
    )


def test_new_templates_get_the_catalogs_style_and_mean_what_was_typed():
    document = SpecDocument(HAND_WRITTEN, "toy.yaml")
    tricky = TemplateEdit({"id": "toy_03", "filter": "x != 'a'", "inputs": "{{ x }}: what's next?\n  - indented: yes #not a comment", "targets": "{{ y }}"})
    plain = TemplateEdit({"id": "toy_04", "inputs": "{{ x }}", "targets": "yes: {{ y }}", "show_options": False, "inverted": False})
    out = document.with_templates([*edits_of(HAND_WRITTEN), tricky, plain])
    assert "- id: toy_03\n  inputs: |-\n    {{ x }}: what's next?\n" in out and '  targets: "yes: {{ y }}"\n  show_options: false\n' in out
    written = yaml.safe_load(out)["templates"]
    assert written[2:] == [tricky.as_spec(), plain.as_spec()]
    assert list(written[2]) == ["id", "inputs", "targets", "filter"]  # the catalog's order, whatever the editor's
    assert "inverted" not in written[3]  # a flag at its default is not written
    assert out.startswith("# A spec laid out by hand") and "# first the plain ones" in out and "# the classic" in out


def test_clearing_a_flag_or_filter_keeps_the_file_tidy():
    text = HAND_WRITTEN.replace("  inverted: false\n", "  inverted: true\n  filter: x == 'a'\n")
    edits = edits_of(text)
    edits[0] = TemplateEdit({**edits[0].values, "inverted": False, "filter": None}, origin=0)
    out = SpecDocument(text, "toy.yaml").with_templates(edits)
    assert "  inverted: false\n" in out and "filter" not in out  # a key that was there keeps its place


def test_unreadable_or_templateless_files_are_refused():
    with pytest.raises(RoundTripError, match="has no `templates` list"):
        SpecDocument("name: x\n", "x.yaml")
    with pytest.raises(RoundTripError, match="cannot be read for editing"):
        SpecDocument("templates: [\n", "x.yaml")


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        ("hello {{ x + }} there", 1, 14),
        ("a\nb {{ foo bar }}", 2, 10),
        ("{{ premise }\nhello", 1, 12),
        ("line1\n  {{ x !y }}", 2, 8),
        ("{% for %}", 1, 8),
        ("{% if x %}yes", 1, 14),
        ("a\n  {{ x }} {{ y | shout }}", 2, 18),  # the compiler's error, after parsing: placed by the name
    ],
)
def test_a_syntax_error_gets_its_column(source, line, column):
    env = make_environment()
    with pytest.raises(jinja2.TemplateSyntaxError) as caught:
        env.from_string(source)
    assert caught.value.lineno == line
    assert error_column(env, source, caught.value) == column


def test_no_column_is_made_up():
    env = make_environment()
    assert error_column(env, "{{ x }}", jinja2.TemplateSyntaxError("the source is too long", 0)) is None
    assert error_column(env, "{{ x }}", jinja2.TemplateSyntaxError("a message the replay does not give", 1)) is None
