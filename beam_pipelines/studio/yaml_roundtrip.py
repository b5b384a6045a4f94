"""A task spec file rewritten with new templates, its comments and layout kept (ruamel.yaml).

PyYAML, which the catalog loads specs with, drops comments and re-flows text, so saving through it
would rewrite every line of a file a person wrote. ruamel.yaml's round-trip mode keeps comments,
key order, quoting and block scalars. Only the `templates` list is touched, and only its lines
are taken from what ruamel writes (the rest of the file stays byte for byte): a template that keeps
its place in the file (`origin`) keeps its mapping, so its comments stay with it, and only the
values that changed are replaced; new templates are written in the catalog's style (`|-` blocks
for text over several lines, double quotes otherwise, keys in TemplateSpec's order).

The emitter's indentation is chosen per file, the one under which the list as loaded is written
back unchanged, so an edit shows as the lines it changed and nothing else.
"""
from __future__ import annotations

import io
from dataclasses import MISSING, dataclass, fields
from typing import Any, Mapping, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from flanforge.beam_pipelines.catalog import TemplateSpec

# (mapping, sequence, offset) indentations tried in turn: the catalog's own style first.
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0))
# A template's keys in the catalog's order, and their defaults, from the spec's own dataclass, so a
# key the catalog adds is written the same way with no change here.
TEMPLATE_KEYS = tuple(f.name for f in fields(TemplateSpec))
TEMPLATE_DEFAULTS = {f.name: f.default for f in fields(TemplateSpec) if f.default is not MISSING}


class RoundTripError(ValueError):
    """The file cannot be rewritten faithfully (ruamel cannot read it, or has no templates list)."""


@dataclass(frozen=True)
class TemplateEdit:
    """A template as the editor has it: its keys and values as the spec file has them (None: the
    key is removed), and `origin`, its index in the file (None for a new template)."""

    values: Mapping[str, Any]
    origin: int | None = None

    @property
    def id(self) -> Any:
        return self.values.get("id")

    def as_spec(self) -> dict[str, Any]:
        """The spec's mapping of this template: no null values, no flags left at their default."""
        return {k: v for k, v in self.values.items() if v is not None and not (isinstance(v, bool) and TEMPLATE_DEFAULTS.get(k) is v)}


def _yaml(indent: tuple[int, int, int]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16  # never re-wrap a long line
    y.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    return y


def _dump(y: YAML, data: Any) -> str:
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def _styled(new: Any, old: Any) -> Any:
    """Text as a scalar of the old value's style, or a `|-` block when it spans lines; a new
    one-line text in double quotes, as the catalog writes `"{{ answer }}"`. Other values as they are."""
    if not isinstance(new, str):
        return new
    if "\n" in new or isinstance(old, LiteralScalarString):
        return LiteralScalarString(new)
    if old is None or isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(new)
    return type(old)(new) if isinstance(old, str) and type(old) is not str else new


def _templates_lines(data: CommentedMap, n_lines: int) -> tuple[int, int]:
    """The lines [start, end) of the `templates` key and its value in the text `data` was loaded
    from: from the key's line to the next top-level key's (or the end)."""
    keys = list(data)
    after = keys.index("templates") + 1
    return data.lc.key("templates")[0], data.lc.key(keys[after])[0] if after < len(keys) else n_lines


class SpecDocument:
    """One spec file's text, loaded for round-trip editing.

    ruamel writes a whole document, and re-flows what it does not keep (the folding of a long plain
    scalar, a list indented unlike the others), so only the lines of the `templates` list are taken
    from what it writes: every other byte of the file stays as it was."""

    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self._lines = text.splitlines(keepends=True)
        self._yaml = _yaml(_INDENTS[0])  # a list no indentation reproduces (hand-made spacing): the catalog's
        for indent in _INDENTS:
            y = _yaml(indent)
            try:
                data = y.load(text)
            except YAMLError as e:
                raise RoundTripError(f"{path}: cannot be read for editing: {' '.join(str(e).split())[:300]}") from None
            if not isinstance(data, CommentedMap) or not isinstance(data.get("templates"), CommentedSeq):
                raise RoundTripError(f"{path}: has no `templates` list to edit")
            self._region = _templates_lines(data, len(self._lines))
            if self._splice(_dump(y, data)) == text:
                self._yaml = y
                break

    def _splice(self, written: str) -> str:
        """The file's text with its templates lines replaced by those of `written`, a whole document."""
        lines = written.splitlines(keepends=True)
        start, end = _templates_lines(self._yaml.load(written), len(lines))
        return "".join(self._lines[: self._region[0]] + lines[start:end] + self._lines[self._region[1] :])

    def with_templates(self, edits: Sequence[TemplateEdit]) -> str:
        """The file's text with its templates list replaced by `edits` (everything else as it was)."""
        data = self._yaml.load(self.text)
        seq: CommentedSeq = data["templates"]
        old_items = list(seq)
        used: set[int] = set()
        items = []
        for edit in edits:
            reuse = edit.origin is not None and 0 <= edit.origin < len(old_items) and edit.origin not in used
            if reuse:
                used.add(edit.origin)
            mapping = old_items[edit.origin] if reuse else CommentedMap()
            _update(mapping, edit)
            items.append(mapping)
        del seq[:]
        seq.extend(items)
        return self._splice(_dump(self._yaml, data))


def _update(mapping: CommentedMap, edit: TemplateEdit) -> None:
    """Bring one template mapping in line with `edit`, changing only what differs. A key the file
    has keeps its place (and its comments) even at its default; a new key is added only when it
    is not at its default, a new mapping gets its keys in the catalog's order."""
    wanted = {k: v for k, v in edit.values.items() if v is not None}
    for key in [k for k in mapping if k not in wanted]:
        del mapping[key]
    for key in sorted(wanted, key=lambda k: TEMPLATE_KEYS.index(k) if k in TEMPLATE_KEYS else len(TEMPLATE_KEYS)):
        new = wanted[key]
        if key in mapping:
            if mapping[key] != new:
                mapping[key] = _styled(new, mapping[key])
        elif not (isinstance(new, bool) and TEMPLATE_DEFAULTS.get(key) is new):
            mapping[key] = new if key == "id" else _styled(new, None)
