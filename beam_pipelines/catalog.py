"""Task specs and clusters: YAML files on disk -> validated, immutable dataclasses.

Specs are contributed data, so every load validates them against
`schemas/task_spec.schema.json` and a few cross-file rules (file name = task name, folder =
cluster, unique template ids), and reports every problem at once, each naming the file and,
where there is one, the template and field. A templates directory may also be a gs:// prefix (a
catalog kept next to the data a Dataflow job reads), read through the Beam-free file layer.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from flanforge.schemas import TASK_SPEC_SCHEMA_PATH
from flanforge.schemas.files import StorageError, first_line, is_remote, match_files, open_input
from flanforge.templates import TEMPLATES_DIR

CLUSTERS_FILE = "clusters.yaml"
RECIPES_DIR = "recipes"
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a task or cluster name (the schema's pattern), used with fullmatch


class SpecError(ValueError):
    """One or more task specs are invalid; `problems` has one line per problem."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# Bounds on what a spec file may be, checked before anything is built from it, so that a hostile
# or broken file fails with a SpecError in bounded time and memory (and a build's fingerprint of
# an accepted spec, which copies and serialises all of it, stays bounded too). Building Python
# objects costs per value, not per byte (a 1 MiB flow list of 500,000 ints takes ~4 s to load),
# hence the count. The bundled specs are at most ~12 KB, 6 levels deep and 481 values.
MAX_SPEC_BYTES = 1 << 20  # a spec, clusters.yaml or recipe file
MAX_SPEC_DEPTH = 64  # nested mappings/lists, the document's own mapping being level 1
MAX_SPEC_VALUES = 50_000  # scalars, mappings and lists (keys included) in one document
MAX_MESSAGE_CHARS = 200  # an error's message part; a location part gets at most MAX_LOCATION_CHARS
MAX_LOCATION_CHARS = 120

_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def _one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line (line breaks escaped) and at most `limit` characters, keeping its start
    and end (a schema error puts the offending value first and what was wrong with it last)."""
    text = str(text)
    if len(text) > 4 * limit:  # clip before escaping: the text may be a whole file
        text = text[: 2 * limit] + text[-2 * limit :]
    text = text.translate(_LINE_BREAKS)
    if len(text) <= limit:
        return text
    head = (limit * 2) // 3
    return text[:head] + "…" + text[len(text) - (limit - head - 1) :]


# A chain-of-thought target is the rationale, a space, then this sentence (Jinja over the row), unless
# the spec sets `cot_answer_phrase`.
DEFAULT_COT_ANSWER_PHRASE = "So the answer is {{ answer }}."


def default_collection(data: Mapping[str, Any]) -> str:
    """The collection of a spec that names none, from where the task came from: the names are
    Flan 2022's collections (docs/COLLECTIONS.md), so its published weights apply as they are."""
    if data.get("promptsource"):
        return "p3"
    if data["source"]["kind"] == "niv2":
        return "niv2"
    if data["cluster"] == "cot":
        return "cot"
    return "flan2021"


@dataclass(frozen=True)
class TemplateSpec:
    id: str
    inputs: str = ""  # inputs and targets, or jinja (the schema requires one or the other)
    targets: str = ""
    inverted: bool = False
    show_options: bool = True
    free_text: bool = False  # the target is free text about the example (an explanation), not an option
    cot: bool = False  # chain of thought: the target is the rendered rationale + the spec's cot_answer_phrase
    filter: str | None = None  # a sandboxed expression: the template applies only to rows where it is true
    # promptsource's form (docs/PROMPTSOURCE.md): one source whose output is split on ||| into inputs and
    # targets, the options rendered per row from answer_choices, and where the prompt came from
    jinja: str | None = None
    answer_choices: str | None = None
    promptsource: Mapping[str, Any] | None = None  # its id, name, reference and metadata (original_task, ...)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a source's bytes: the spec's `source` keys, or `--source PATH#KEY=VALUE,...`.

    Text formats read every cell as a string unless `types` declares otherwise, so `0012` stays
    `0012` and an empty cell is an empty string."""

    header: bool = True  # csv/tsv: the first line names the columns
    columns: tuple[str, ...] = ()  # csv/tsv: column names (required when header is false; rename the header's otherwise)
    delimiter: str | None = None  # csv/tsv: ',' or '\t' by default
    quoting: bool | None = None  # csv/tsv: '"' quotes cells; default on for csv, off for tsv
    encoding: str = "utf-8"  # text formats; a UTF-8 byte-order mark is dropped
    types: tuple[tuple[str, str], ...] = ()  # csv/tsv: column -> string | int | float | bool
    explode: str | None = None  # a list field: one row per element ...
    explode_keep: str = "all"  # ... (all), or the first element only (first)


READ_OPTION_KEYS = ("header", "columns", "delimiter", "quoting", "encoding", "types", "explode")
_COLUMN_TYPES = ("string", "int", "float", "bool")


def read_options(fields: Mapping[str, Any], base: ReadOptions = ReadOptions()) -> ReadOptions:
    """ReadOptions from `source` keys (already schema-valid in a spec), over `base`."""
    changes: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "columns":
            changes[key] = tuple(str(c) for c in value)
        elif key == "types":
            bad = sorted(f"{k}: {v}" for k, v in value.items() if v not in _COLUMN_TYPES)
            if bad:
                raise SpecError([f"types: {', '.join(bad)}: a column type is one of {', '.join(_COLUMN_TYPES)}"])
            changes[key] = tuple(sorted({**dict(base.types), **value}.items()))  # added to the base's types
        elif key == "explode":
            keep = value.get("keep", "all")
            if keep not in ("all", "first"):
                raise SpecError([f"explode: keep {keep!r}: use all (one row per element) or first"])
            changes.update(explode=value.get("field") or None, explode_keep=keep)
        elif key in READ_OPTION_KEYS:
            changes[key] = value
    options = replace(base, **changes)
    if not options.header and not options.columns:
        raise SpecError(["header: false needs `columns` (the names of the columns, in order)"])
    if options.delimiter is not None and len(options.delimiter) != 1:
        raise SpecError([f"delimiter must be one character, got {options.delimiter!r}"])
    return options


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    splits: Mapping[str, str]
    path: str | None = None
    name: str | None = None
    data_files: Any = None
    tfds: str | None = None
    id_field: str | None = None
    revision: str | None = None
    data_dir: str | None = None
    read: ReadOptions = ReadOptions()


@dataclass(frozen=True)
class AnswerSpec:
    options: tuple[str, ...] | str  # static options, or an expression yielding a list
    label: str  # expression yielding an index into options, or the option itself


@dataclass(frozen=True)
class TaskSpec:
    name: str
    cluster: str
    description: str
    license: str
    metric: str
    source: SourceSpec
    templates: tuple[TemplateSpec, ...]
    samples: tuple[Mapping[str, Any], ...]
    fields: Mapping[str, str] | None = None
    derived: Mapping[str, str] = field(default_factory=dict)
    filters: tuple[str, ...] = ()
    answers: AnswerSpec | None = None
    cot_answer_phrase: str = DEFAULT_COT_ANSWER_PHRASE  # Jinja: the sentence after a cot template's rationale
    path: str = ""  # the file the spec came from, for error messages
    promptsource: Mapping[str, Any] | None = None  # an imported task's dataset, subset and templates.yaml
    collection: str = "flan2021"  # the spec's `collection`, else default_collection: whose recipe weight applies

    @property
    def template_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.templates)


@dataclass(frozen=True)
class Catalog:
    clusters: Mapping[str, str]  # name -> description
    tasks: Mapping[str, TaskSpec]
    holdout_overlaps: tuple[tuple[str, str], ...] = ()

    def select(self, tasks: Iterable[str] | None = None, clusters: Iterable[str] | None = None) -> list[TaskSpec]:
        """Tasks named in `tasks` or belonging to `clusters` (all when both are None), sorted by name."""
        task_names = set(tasks or ())
        cluster_names = set(clusters or ())
        unknown = sorted(task_names - set(self.tasks))
        if unknown:
            raise SpecError([f"unknown task(s): {', '.join(unknown)} (see `flanforge validate` for the catalog)"])
        unknown = sorted(cluster_names - set(self.clusters))
        if unknown:
            raise SpecError([f"unknown cluster(s): {', '.join(unknown)}; known: {', '.join(sorted(self.clusters))}"])
        if not task_names and not cluster_names:
            return [self.tasks[n] for n in sorted(self.tasks)]
        return [t for n, t in sorted(self.tasks.items()) if n in task_names or t.cluster in cluster_names]

    def excluded_by_holdout(self, holdout: Iterable[str]) -> set[str]:
        """Clusters that must stay out of training when `holdout` is held out: it and its overlaps."""
        held = set(holdout)
        unknown = sorted(held - set(self.clusters))
        if unknown:
            raise SpecError([f"--holdout-clusters: unknown cluster(s) {', '.join(unknown)}; known: {', '.join(sorted(self.clusters))}"])
        return held | {b for a, b in self.holdout_overlaps if a in held} | {a for a, b in self.holdout_overlaps if b in held}


def _schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(TASK_SPEC_SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(schema)


def _describe_location(spec: Mapping[str, Any], path: Iterable[Any]) -> str:
    """Turn a JSON path like templates/3/inputs into 'template rte_04 field inputs'."""
    raw = list(path)
    parts = [_one_line(p, 40) for p in raw]
    if len(raw) >= 2 and raw[0] == "templates" and isinstance(raw[1], int):
        index = raw[1]
        templates = spec.get("templates")
        template = templates[index] if isinstance(templates, list) and index < len(templates) else None
        tid = template.get("id") if isinstance(template, dict) else None
        label = f"template {_one_line(tid, 40)}" if isinstance(tid, str) and tid else f"template #{index + 1}"
        rest = "/".join(parts[2:])
        text = f"{label} field {rest}" if rest else label
    else:
        text = "field " + "/".join(parts) if parts else "top level"
    return _one_line(text, MAX_LOCATION_CHARS)


def _shape_problem(data: Any) -> str | None:
    """Why `data` is too deep, too big or not JSON-shaped to be a spec, or None; in bounded time
    (it stops at the first problem, so shared or cyclic Python objects cannot make it run long)."""
    # (value, its depth, (its key, the parent's entry)): a path is spelled out only for a problem.
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    count = 1

    def location(link: Any) -> str:
        keys = []
        while link is not None:
            key, link = link
            keys.append(key)
        return _describe_location(data, reversed(keys))

    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, dict):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = enumerate(value)
        else:
            continue
        if depth > MAX_SPEC_DEPTH:
            return f"{location(link)}: nested deeper than {MAX_SPEC_DEPTH} levels"
        for key, child in children:
            if isinstance(value, dict) and not isinstance(key, str):
                return (
                    f"{location(link)}: key {_one_line(repr(key), 40)} ({type(key).__name__}) is not a string "
                    "(quote it: YAML reads yes/no/on/off as booleans, 1 as a number)"
                )
            count += 1
            if count > MAX_SPEC_VALUES:
                return f"top level: more than {MAX_SPEC_VALUES:,} values: a spec is not data (keep rows in the source)"
            stack.append((child, depth + 1, (key, link)))
    return None


def parse_task_spec(data: Any, path: str, validator: jsonschema.Draft202012Validator | None = None) -> TaskSpec:
    """Validate one spec's parsed YAML and build its dataclass; raise SpecError naming every problem.

    Only SpecError is raised, one line per problem, each naming `path` and the field."""
    validator = validator or _schema_validator()
    if not isinstance(data, dict):
        raise SpecError([f"{path}: top level: a task spec must be a mapping, got {type(data).__name__}"])
    shape = _shape_problem(data)
    if shape:
        raise SpecError([f"{path}: {shape}"])
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        problems = [f"{path}: {_describe_location(data, err.absolute_path)}: {_one_line(err.message)}" for err in errors]
    except (RecursionError, MemoryError) as e:
        raise SpecError([f"{path}: top level: too large or too deeply nested to validate ({type(e).__name__})"]) from None
    if problems:
        raise SpecError(problems)
    try:
        return _build_task_spec(data, path)
    except SpecError:
        raise
    except Exception as e:  # the schema should rule these out; never let one escape as a traceback
        raise SpecError([f"{path}: top level: cannot be read: {type(e).__name__}: {_one_line(e)}"]) from None


def _build_task_spec(data: dict[str, Any], path: str) -> TaskSpec:
    """The dataclass of a schema-valid spec, after the rules the schema cannot state."""
    problems: list[str] = []
    seen: set[str] = set()
    for t in data["templates"]:
        if t["id"] in seen:
            problems.append(f"{path}: template {_one_line(t['id'], 40)}: duplicate template id")
        seen.add(t["id"])
        if t.get("cot") and (t.get("inverted") or t.get("free_text")):
            problems.append(f"{path}: template {_one_line(t['id'], 40)} field cot: a chain-of-thought template cannot also be inverted or free_text")
    if problems:
        raise SpecError(problems)
    answers = data.get("answers")
    src = data["source"]
    try:
        read = read_options({k: src[k] for k in READ_OPTION_KEYS if k in src})
    except SpecError as e:
        raise SpecError([f"{path}: field source: {_one_line(p)}" for p in e.problems]) from None
    return TaskSpec(
        name=data["name"],
        cluster=data["cluster"],
        description=data["description"],
        license=data["license"],
        metric=data["metric"],
        source=SourceSpec(
            kind=src["kind"],
            splits=dict(src["splits"]),
            path=src.get("path"),
            name=src.get("name"),
            data_files=src.get("data_files"),
            tfds=src.get("tfds"),
            id_field=src.get("id_field"),
            revision=src.get("revision"),
            data_dir=src.get("data_dir"),
            read=read,
        ),
        templates=tuple(TemplateSpec(**t) for t in data["templates"]),
        samples=tuple(data["samples"]),
        fields=data.get("fields"),
        derived=dict(data.get("derived") or {}),
        filters=tuple(data.get("filters") or ()),
        cot_answer_phrase=data.get("cot_answer_phrase", DEFAULT_COT_ANSWER_PHRASE),
        promptsource=data.get("promptsource"),
        collection=data.get("collection") or default_collection(data),
        answers=None
        if answers is None
        else AnswerSpec(
            options=tuple(answers["options"]) if isinstance(answers["options"], list) else answers["options"],
            label=answers["label"],
        ),
        path=path,
    )


def _root(templates_dir: str | Path | None) -> str:
    """The templates directory as a string without a trailing slash (local paths normalised)."""
    if templates_dir is None:
        return str(TEMPLATES_DIR)
    text = str(templates_dir)
    return text.rstrip("/") if is_remote(text) else str(Path(text))


def _join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts) if is_remote(root) else str(Path(root, *parts))


def _glob(root: str, pattern: str) -> list[str]:
    """Files under root matching a '/'-separated pattern whose '*' stays within one folder level, sorted."""
    if not is_remote(root):
        return sorted(str(p) for p in Path(root).glob(pattern) if p.is_file())
    depth = pattern.count("/")
    # Cloud Storage globs let '*' match '/', so keep only names at the pattern's depth.
    return [f.path for f in match_files(_join(root, pattern)) if f.path[len(root) + 1:].count("/") == depth]


def _is_file(path: str) -> bool:
    if not is_remote(path):
        return Path(path).is_file()
    return any(f.path == path for f in match_files(path))


def _is_dir(root: str) -> bool:
    if not is_remote(root):
        return Path(root).is_dir()
    try:
        return bool(match_files(_join(root, "*")))
    except StorageError:  # e.g. no such bucket: for a templates directory, the same as "not found"
        return False


def _read_text(path: str) -> str:
    """A spec file's text (local or remote), refused unread past MAX_SPEC_BYTES."""
    try:
        if is_remote(path):
            with open_input(path) as f:
                data = f.read(MAX_SPEC_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError([f"{path}: cannot be read: {_one_line(first_line(e))}"]) from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([f"{path}: larger than {MAX_SPEC_BYTES:,} bytes: a spec file is not data (keep rows in the source)"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError([f"{path}: not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}"]) from None


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def _folder(path: str) -> str:
    return posixpath.basename(posixpath.dirname(path))


# libyaml's parser when PyYAML was built with it (its wheels are): the same documents, ~10x faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_refusal(text: str, aliases: bool = False) -> str | None:
    """Why a YAML text is refused before anything is built from it: an alias, nesting deeper than
    MAX_SPEC_DEPTH or more than MAX_SPEC_VALUES values; None when it is none of these. It reads
    the parser's events, which hold no expanded values, so neither an alias bomb nor deep nesting
    costs more than the text's size (and the walk stops at the first problem).

    With `aliases` (promptsource's files share a metadata mapping through one), an alias is
    allowed and counts as the values and levels of what it stands for, expanded, so the bounds
    hold for the document as built and an alias bomb is refused just the same."""
    depth = values = 0
    open_collections: list[list[Any]] = []  # per open collection: its anchor, the values before it, its depth, the deepest level in it
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of its node, expanded
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            if not aliases:
                return f"{_where(event)}aliases (*{_one_line(event.anchor, 40)}) are not allowed in specs: write the value out"
            if event.anchor not in anchored:
                return f"{_where(event)}alias *{_one_line(event.anchor, 40)} refers to no finished anchor"
            size, levels = anchored[event.anchor]
            values += size
            if values > MAX_SPEC_VALUES:
                return f"{_where(event)}more than {MAX_SPEC_VALUES:,} values (aliases expanded): a spec is not data (keep rows in the source)"
            if depth + levels > MAX_SPEC_DEPTH:
                return f"{_where(event)}nested deeper than {MAX_SPEC_DEPTH} levels (aliases expanded)"
            if open_collections:
                open_collections[-1][3] = max(open_collections[-1][3], depth + levels)
            continue
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            values += 1
            if values > MAX_SPEC_VALUES:
                return f"{_where(event)}more than {MAX_SPEC_VALUES:,} values: a spec is not data (keep rows in the source)"
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                return f"{_where(event)}nested deeper than {MAX_SPEC_DEPTH} levels"
            open_collections.append([event.anchor, values - 1, depth, depth])
        elif isinstance(event, yaml.ScalarEvent) and event.anchor:
            anchored[event.anchor] = (1, 0)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start, level, deepest = open_collections.pop()
            if open_collections:
                open_collections[-1][3] = max(open_collections[-1][3], deepest)
            if anchor:
                anchored[anchor] = (values - start, deepest - level + 1)
            depth -= 1
    return None


def _where(item: Any) -> str:
    """'line L, column C: ' of a YAML event or error, or '' when it has no position."""
    mark = getattr(item, "start_mark", None) or getattr(item, "problem_mark", None) or getattr(item, "context_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _yaml_error_text(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.MarkedYAMLError) and (e.problem or e.context):
        return _where(e) + "; ".join(str(x) for x in (e.context, e.problem) if x)
    return " ".join(str(e).split())


def load_spec_yaml(path: str) -> Any:
    """A spec file's raw YAML data, read with the same limits and refusals as the catalog's loader
    (for tools that edit a spec before parsing it, such as the studio)."""
    return _load_yaml(path)


def _load_yaml(path: str, loader: type = _YAML_LOADER, aliases: bool = False) -> Any:
    """One YAML document, local or remote, within MAX_SPEC_BYTES, MAX_SPEC_DEPTH and
    MAX_SPEC_VALUES and without aliases (checked on the parser's events before anything is
    built); any problem, however malformed the file, is a one-line SpecError naming the file.
    `loader` is a safe loader (a subclass of the default one that maps a few tags to plain data);
    `aliases` allows aliases, counted expanded (see _yaml_refusal)."""
    text = _read_text(path)
    try:
        refusal = _yaml_refusal(text, aliases)
        if refusal:
            raise SpecError([f"{path}: {refusal}"])
        return yaml.load(text, Loader=loader)
    except SpecError:
        raise
    except yaml.YAMLError as e:
        raise SpecError([f"{path}: not valid YAML: {_one_line(_yaml_error_text(e))}"]) from None
    except (RecursionError, MemoryError) as e:
        raise SpecError([f"{path}: too large or too deeply nested to load ({type(e).__name__})"]) from None
    except Exception as e:  # a value YAML parses but Python cannot hold, e.g. the date 2001-13-45 or a 5,000-digit int
        raise SpecError([f"{path}: not valid YAML: {type(e).__name__}: {_one_line(e)}"]) from None


def _load_clusters(root: str) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    path = _join(root, CLUSTERS_FILE)
    if not _is_file(path):
        raise SpecError([f"{path}: missing: a templates directory needs a {CLUSTERS_FILE} listing its clusters"])
    data = _load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), dict):
        raise SpecError([f"{path}: top level: expected a 'clusters' mapping of name -> {{description}}"])
    clusters: dict[str, str] = {}
    for name, info in data["clusters"].items():
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise SpecError([f"{path}: clusters: {_one_line(repr(name), 60)} is not a cluster name (lowercase letters, digits, _)"])
        description = info.get("description") if isinstance(info, dict) else info
        if not isinstance(description, (str, type(None))) or isinstance(info, str):
            raise SpecError([f"{path}: clusters: {name}: expected {{description: text}}"])
        clusters[name] = description or ""
    pairs = data.get("holdout_overlaps") or []
    if not isinstance(pairs, list):
        raise SpecError([f"{path}: holdout_overlaps: expected a list of [cluster, cluster] pairs"])
    overlaps = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p in clusters for p in pair)):
            raise SpecError([f"{path}: holdout_overlaps: {_one_line(repr(pair), 80)} is not a pair of known clusters"])
        overlaps.append((pair[0], pair[1]))
    return clusters, tuple(overlaps)


def template_folders(templates_dir: str | Path | None) -> list[str]:
    """--templates as directories: one, or several separated by commas; none for the bundled catalog."""
    if templates_dir is None:
        return []
    return [_root(part) for part in str(templates_dir).split(",") if part.strip()]


def load_catalog(templates_dir: str | Path | None = None) -> Catalog:
    """Load a templates directory (local or gs://); raise SpecError listing all problems.

    A directory with a clusters.yaml is a whole catalog. One without is an overlay on the
    bundled catalog: its <cluster>/<task>.yaml specs are added to the bundled ones (a spec named
    like a bundled task replaces it), so a user keeps their own specs outside the package.
    Several directories, comma-separated, stack in order: the first is a whole catalog or an
    overlay on the bundled one, each later one an overlay on all before it (promptsource's
    collection, then the user's own specs and fixes)."""
    folders = template_folders(templates_dir) or [_root(None)]
    for root in folders:
        if not _is_dir(root):
            raise SpecError([f"{root}: templates directory not found"])
    first, *later = folders
    if templates_dir is None or _is_file(_join(first, CLUSTERS_FILE)):
        catalog = _whole_catalog(first)
    else:
        catalog = _overlay(_whole_catalog(_root(None)), first)
    for root in later:
        if _is_file(_join(root, CLUSTERS_FILE)):
            raise SpecError([f"{root}: has a {CLUSTERS_FILE}: only the first of several --templates directories may be a whole catalog"])
        catalog = _overlay(catalog, root)
    return catalog


def _whole_catalog(root: str) -> Catalog:
    clusters, overlaps = _load_clusters(root)
    return Catalog(clusters=clusters, tasks=_load_tasks(root, clusters, clusters_file=_join(root, CLUSTERS_FILE)), holdout_overlaps=overlaps)


def _overlay(base: Catalog, root: str) -> Catalog:
    """base with root's specs added (a spec named like one of base's replaces it)."""
    from flanforge.beam_pipelines.importers import promptsource  # imports this module

    if promptsource.is_collection(root):  # promptsource's own layout, read as it is (docs/PROMPTSOURCE.md)
        own = promptsource.load_tasks(root, base.clusters)
    else:
        own = _load_tasks(root, base.clusters, clusters_file=f"the base catalog's {CLUSTERS_FILE} (an overlay adds tasks, not clusters)")
    return Catalog(clusters=base.clusters, tasks={**base.tasks, **own}, holdout_overlaps=base.holdout_overlaps)


def _load_tasks(root: str, clusters: Mapping[str, str], *, clusters_file: str) -> dict[str, TaskSpec]:
    """Every <cluster>/<task>.yaml under root, checked against the schema and the cross-file rules."""
    validator = _schema_validator()
    tasks: dict[str, TaskSpec] = {}
    problems: list[str] = []
    for path in (p for p in _glob(root, "*/*.yaml") if _folder(p) != RECIPES_DIR):
        try:
            spec = parse_task_spec(_load_yaml(path), path, validator)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        if spec.name != _stem(path):
            problems.append(f"{path}: field name: task name {spec.name!r} must match the file name {_stem(path)!r}")
        if spec.cluster != _folder(path):
            problems.append(f"{path}: field cluster: {spec.cluster!r} must match the folder {_folder(path)!r}")
        if spec.cluster not in clusters:
            problems.append(f"{path}: field cluster: {spec.cluster!r} is not in {clusters_file}")
        if spec.name in tasks:
            problems.append(f"{path}: field name: task {spec.name!r} is also defined in {tasks[spec.name].path}")
        tasks[spec.name] = spec
    if problems:
        raise SpecError(problems)
    if not tasks:
        raise SpecError([f"{root}: no task specs found (expected <cluster>/<task>.yaml files)"])
    return tasks


# A collection's own render and cap settings, overriding the build's for its tasks (as Flan 2022 built
# some collections zero-shot only, others also few-shot); their values are checked by BuildConfig.
COLLECTION_SETTINGS = ("max_examples_per_task", "template_mode", "few_shot", "options_variants")
_SETTING_TYPES = {"max_examples_per_task": (int, type(None)), "template_mode": str, "few_shot": int, "options_variants": str}
COLLECTION_KEYS = ("weight", "mixing_rate_cap", *COLLECTION_SETTINGS)


def parse_collections(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """A recipe's `collections:` -> {name: {weight, mixing_rate_cap, and the COLLECTION_SETTINGS it
    sets}} (cap None: the build's --mixing-rate-cap; a setting left out: the build's); SpecError
    naming `where` and the collection for anything else."""
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError([f"{where}: collections: expected a mapping of collection -> {{weight: W, mixing_rate_cap: N}}"])
    problems, out = [], {}
    for name, entry in raw.items():
        label = f"{where}: collections: {_one_line(repr(name) if not isinstance(name, str) else name, 60)}"
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            problems.append(f"{label}: not a collection name (lowercase letters, digits, _)")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"{label}: expected {{weight: W}}")
            continue
        for key in sorted(set(entry) - set(COLLECTION_KEYS), key=str):
            problems.append(f"{label}: {_one_line(str(key), 60)}: unknown key (a collection takes {', '.join(COLLECTION_KEYS)})")
        weight, cap = entry.get("weight"), entry.get("mixing_rate_cap")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
            problems.append(f"{label}: weight: {_one_line(repr(weight), 40)}: a positive number (the collection's share of training)")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            problems.append(f"{label}: mixing_rate_cap: {_one_line(repr(cap), 40)}: a whole number of examples, at least 1")
        for key in COLLECTION_SETTINGS:
            value = entry.get(key)
            if key in entry and (isinstance(value, bool) or not isinstance(value, _SETTING_TYPES[key])):
                problems.append(f"{label}: {key}: {_one_line(repr(value), 40)}: expected what `build: {key}:` takes")
        out[name] = {"weight": weight, "mixing_rate_cap": cap, **{k: entry[k] for k in COLLECTION_SETTINGS if k in entry}}
    if problems:
        raise SpecError(problems)
    return out


def load_recipe(name_or_path: str, templates_dir: str | Path | None = None) -> dict[str, Any]:
    """A recipe's build settings: a file path (local or gs://), or a name under <templates>/recipes/;
    its `collections:`, if any, under the key `collections`."""
    folders = template_folders(templates_dir)
    base = folders[0] if folders else _root(None)
    if name_or_path.endswith(".yaml"):
        path = name_or_path
    else:  # the last directory that has it
        named = (_join(root, RECIPES_DIR, f"{name_or_path}.yaml") for root in reversed(folders or [base]))
        found = [p for p in named if _is_file(p)]
        if not found and folders and not _is_file(_join(base, CLUSTERS_FILE)):
            return load_recipe(name_or_path)  # overlays only: the bundled recipes
        path = found[0] if found else _join(base, RECIPES_DIR, f"{name_or_path}.yaml")
    if not _is_file(path):
        known = [_stem(p) for p in _glob(_join(base, RECIPES_DIR), "*.yaml")]
        raise SpecError([f"recipe {name_or_path!r} not found at {path}; known recipes: {', '.join(known) or 'none'}"])
    data = _load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("build"), dict) or "version" not in data:
        raise SpecError([f"{path}: a recipe needs 'name', 'version' and a 'build' mapping"])
    collections = {"collections": parse_collections(data["collections"], path)} if "collections" in data else {}
    return {**data["build"], **collections, "recipe": f"{data.get('name', _stem(path))}@{data['version']}"}
