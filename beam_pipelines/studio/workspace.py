"""The studio's templates directory: its tasks, rows to render them on, and saving a draft back.

Pure logic, testable without a server: app.py turns each public method into a route. The catalog
is catalog.load_catalog's (so an overlay directory behaves as it does for `build`), rows come
through sources.plan_reads / read_shard (the spec's samples as --demo reads them, a --source file,
or the spec's own source), and a draft is saved only after its new text has been loaded back the
way the catalog loads a spec and passed the checks `flanforge validate` runs on it.

Writes stay inside the templates directory: the file written is always
<templates>/<cluster>/<task>.yaml, named from the spec's schema-checked name and cluster, never
from a request; it is refused when it, or a folder on its way, is a symbolic link or resolves
outside the directory. In an overlay directory, saving a bundled task writes the overlay's copy.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from flanforge.beam_pipelines.catalog import CLUSTERS_FILE, Catalog, SpecError, TaskSpec, load_catalog, load_spec_yaml, parse_task_spec
from flanforge.beam_pipelines.sources import ReadProblem, SourceError, plan_reads, read_shard
from flanforge.beam_pipelines.studio.lint import Evaluation, PageRow, TemplateCheck, check_template, evaluate
from flanforge.beam_pipelines.studio.yaml_roundtrip import TEMPLATE_DEFAULTS, RoundTripError, SpecDocument, TemplateEdit
from flanforge.beam_pipelines.validate import spec_problems
from flanforge.schemas.files import first_line, is_remote
from flanforge.templates import TEMPLATES_DIR

MAX_PAGE_ROWS = 50
MAX_KEPT_CHECKS = 2048  # template checks kept between renders (a few KB each)
SAMPLES = "samples"


class StudioError(ValueError):
    """A request the studio refuses; `status` is the HTTP status app.py answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RowsPage:
    rows: list[PageRow]
    offset: int
    has_more: bool
    problems: list[str]  # records the reader could not read (dead letters in a build)


@dataclass(frozen=True)
class SaveCheck:
    """A draft as it would be written: the new text, its diff against the file, and why it may not
    be saved (empty: it may)."""

    path: str
    text: str
    diff: str
    problems: list[str]


def _drafts(templates: Any) -> list[TemplateEdit]:
    """Request JSON -> TemplateEdits: a list of objects, each the template's keys as the spec has
    them plus `origin` (its index in the file, or null). The values are checked by the schema."""
    if not isinstance(templates, list) or not templates:
        raise StudioError("a draft needs a non-empty list of templates")
    out = []
    for n, t in enumerate(templates, start=1):
        if not isinstance(t, dict):
            raise StudioError(f"template #{n}: expected an object")
        origin = t.get("origin")
        if not (origin is None or (isinstance(origin, int) and not isinstance(origin, bool))):
            raise StudioError(f"template #{n}: origin is the template's position in the file, or null")
        out.append(TemplateEdit({k: v for k, v in t.items() if k != "origin"}, origin))
    return out


class Workspace:
    """A templates directory (None: the bundled catalog) and the --source files given for tasks."""

    def __init__(self, templates_dir: str | None = None, sources: Mapping[str, Mapping[str, str]] | None = None):
        if templates_dir is not None and "," in templates_dir:
            raise StudioError(f"{templates_dir}: the studio edits one templates directory; give one (an overlay still shows the bundled tasks)")
        if templates_dir is not None and is_remote(templates_dir):
            raise StudioError(f"{templates_dir}: the studio edits a local templates directory (copy it here first)")
        self.templates_dir = templates_dir
        self.root = Path(templates_dir if templates_dir is not None else TEMPLATES_DIR).resolve()
        self.overlay = templates_dir is not None and not (self.root / CLUSTERS_FILE).is_file()
        self.sources = {task: dict(splits) for task, splits in (sources or {}).items()}
        self._catalog: Catalog | None = None
        self._checks: dict[tuple[str, str, str], TemplateCheck] = {}

    # --- the catalog ---------------------------------------------------------------------------

    def reload(self) -> Catalog:
        """The catalog as it is on disk now (raises SpecError listing its problems)."""
        self._catalog = load_catalog(self.templates_dir)
        unknown = sorted(set(self.sources) - set(self._catalog.tasks))
        if unknown:
            raise SpecError([f"--source names task(s) not in the catalog: {', '.join(unknown)}"])
        return self._catalog

    @property
    def catalog(self) -> Catalog:
        return self._catalog or self.reload()

    def task(self, name: str) -> TaskSpec:
        spec = self.catalog.tasks.get(name)
        if spec is None:
            raise StudioError(f"unknown task {name!r}", 404)
        return spec

    def catalog_summary(self) -> dict[str, Any]:
        """Clusters -> tasks with what a browser of the catalog shows about each."""
        try:
            catalog = self.reload()
        except SpecError as e:
            return {"root": str(self.root), "overlay": self.overlay, "problems": e.problems, "clusters": []}
        clusters = []
        for cluster, description in catalog.clusters.items():
            tasks = [_task_summary(s, self.is_own(s)) for s in catalog.select(clusters=[cluster])]
            if tasks:
                clusters.append({"name": cluster, "description": description, "tasks": tasks})
        return {"root": str(self.root), "overlay": self.overlay, "problems": [], "clusters": clusters}

    def is_own(self, spec: TaskSpec) -> bool:
        """Whether the spec's file is in the templates directory (an overlay's bundled tasks are not)."""
        return Path(spec.path).resolve().parent.parent == self.root

    # --- one task ------------------------------------------------------------------------------

    def task_detail(self, name: str) -> dict[str, Any]:
        spec = self.task(name)
        text = self._base_text(spec)
        try:
            SpecDocument(text, spec.path)  # a file ruamel cannot edit is refused now, before anyone types
        except RoundTripError as e:
            raise StudioError(str(e), 422) from None
        try:
            save_path, read_only = str(self.save_path(spec)), ""
        except StudioError as e:  # shown, and saving refused, but the task can still be read and tried
            save_path, read_only = "", str(e)
        data = self._base_data(spec)
        return {
            **_task_summary(spec, self.is_own(spec)),
            # whether the spec names its collection, or has the one catalog.default_collection gives its origin
            "collection_in_spec": bool(data.get("collection")),
            "variables": _variables(spec),
            "filters": list(spec.filters),
            "templates": [{**t, "origin": i} for i, t in enumerate(data["templates"])],
            "template_flags": {k: v for k, v in TEMPLATE_DEFAULTS.items() if isinstance(v, bool)},
            "samples": [dict(s) for s in spec.samples],
            "row_sources": self.row_sources(spec),
            "save_path": save_path,
            "read_only": read_only,
            "base_sha256": sha256_text(text),
        }

    def row_sources(self, spec: TaskSpec) -> list[dict[str, str]]:
        """Where the page's rows may come from: the samples, each --source split, each split of
        the spec's own source (a hub dataset is read over the network)."""
        out = [{"key": SAMPLES, "label": f"the spec's {len(spec.samples)} sample rows"}]
        out += [{"key": f"source:{split}", "label": f"--source {split}: {path}"} for split, path in sorted(self.sources.get(spec.name, {}).items())]
        where = spec.source.path or spec.source.name or spec.source.kind
        out += [{"key": f"spec:{split}", "label": f"{spec.source.kind} {where} ({split})"} for split in sorted(spec.source.splits)]
        return out

    def rows(self, name: str, key: str = SAMPLES, offset: int = 0, limit: int = 10) -> RowsPage:
        """A page of rows of one of the task's row sources, with the example ids a build gives them."""
        spec = self.task(name)
        offset, limit = max(0, int(offset)), max(1, min(int(limit), MAX_PAGE_ROWS))
        kind, _, split = key.partition(":")
        try:
            if key == SAMPLES:
                shards = plan_reads(spec, demo=True, overrides={})
            elif kind == "source" and split in self.sources.get(name, {}):
                shards = plan_reads(spec, demo=False, overrides={split: self.sources[name][split]}, splits={split: split})
            elif kind == "spec" and split in spec.source.splits:
                shards = plan_reads(spec, demo=False, overrides={}, splits={split: split})
            else:
                raise StudioError(f"task {name} has no row source {key!r}")
            rows, problems, more = _page(_read(shards), offset, limit)
        except (SourceError, SpecError, ValueError, OSError) as e:
            if isinstance(e, StudioError):
                raise
            raise StudioError(f"cannot read rows of {name} from {key}: {first_line(e)}", 422) from None
        return RowsPage(rows, offset, more, problems)

    def render(
        self, name: str, templates: Sequence[Mapping[str, Any]], *, rows: str = SAMPLES, offset: int = 0, limit: int = 10,
        few_shot: int = 0, no_options: bool = False,
    ) -> dict[str, Any]:
        """The draft rendered on a page of rows with its findings, and why it may not be saved yet
        (`save_problems`: validate's problems on the spec's samples; empty: it may be saved)."""
        spec = self.task(name)
        drafts = _drafts(templates)
        page = self.rows(name, rows, offset, limit)
        data = self._base_data(spec)
        checks = [self._check(spec, data, d) for d in drafts]
        few_shot = max(0, min(int(few_shot), 8))
        result: Evaluation = evaluate(data, spec.path, drafts, page.rows, few_shot=few_shot, no_options=bool(no_options), checks=checks)
        return {
            **asdict(result),
            "page": {"offset": page.offset, "has_more": page.has_more, "read_problems": page.problems},
            "save_problems": self._draft_problems(spec, drafts),
        }

    # --- diff and save ---------------------------------------------------------------------------

    def save_path(self, spec: TaskSpec) -> Path:
        """<templates>/<cluster>/<task>.yaml, refused (403) when it would be outside the directory."""
        target = self.root / spec.cluster / f"{spec.name}.yaml"
        for path in (target.parent, target):
            if path.is_symlink():
                raise StudioError(f"{path} is a symbolic link: the studio writes only plain files inside {self.root}", 403)
        resolved = target.resolve()
        if not resolved.is_relative_to(self.root) or resolved.parent.parent != self.root:
            raise StudioError(f"{target} is outside the templates directory {self.root}", 403)
        return target

    def check(self, name: str, templates: Sequence[Mapping[str, Any]], base_sha256: str | None = None) -> SaveCheck:
        """What saving the draft would write, and why it may not be saved."""
        spec = self.task(name)
        target = self.save_path(spec)
        base = self._base_text(spec)
        if base_sha256 is not None and base_sha256 != sha256_text(base):
            raise StudioError(f"{spec.path} changed on disk since it was opened: reload the task (your edits are kept in the page until then)", 409)
        drafts = _drafts(templates)
        try:
            text = SpecDocument(base, spec.path).with_templates(drafts)
        except RoundTripError as e:
            raise StudioError(str(e), 422) from None
        diff = "".join(difflib.unified_diff(base.splitlines(True), text.splitlines(True), f"a/{spec.cluster}/{spec.name}.yaml", f"b/{spec.cluster}/{spec.name}.yaml"))
        return SaveCheck(str(target), text, diff, self._text_problems(spec, drafts, text, str(target)))

    def save(self, name: str, templates: Sequence[Mapping[str, Any]], base_sha256: str | None) -> dict[str, Any]:
        """Write the draft to its spec file, only when it validates; returns the new state."""
        result = self.check(name, templates, base_sha256)
        if result.problems:
            raise StudioError("not saved: " + "; ".join(result.problems[:5]), 422)
        target = Path(result.path)
        target.parent.mkdir(exist_ok=True)  # an overlay's first copy of a bundled task of this cluster
        temporary = target.parent / f".{target.name}.studio-{os.getpid()}.tmp"
        try:
            temporary.write_text(result.text, encoding="utf-8")
            os.replace(temporary, target)  # atomic: a reader sees the old file or the new, never half
        finally:
            temporary.unlink(missing_ok=True)
        self.reload()
        return {"path": str(target), "diff": result.diff, "base_sha256": sha256_text(result.text)}

    # --- internals -------------------------------------------------------------------------------

    def _base_text(self, spec: TaskSpec) -> str:
        """The text a draft of this task edits: its file in the directory, else (an overlay's
        bundled task) the bundled file the overlay's copy starts from."""
        target = self.root / spec.cluster / f"{spec.name}.yaml"
        source = target if target.is_file() else Path(spec.path)
        try:
            return source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise StudioError(f"{source}: cannot be read: {first_line(e)}", 422) from None

    def _base_data(self, spec: TaskSpec) -> Mapping[str, Any]:
        try:
            return load_spec_yaml(spec.path)
        except SpecError as e:
            raise StudioError("; ".join(e.problems), 422) from None

    def _check(self, spec: TaskSpec, data: Mapping[str, Any], draft: TemplateEdit) -> TemplateCheck:
        """check_template, kept per (spec file content, template): as you type, only the template
        being edited is compiled again."""
        key = (spec.path, sha256_text(json.dumps(data, sort_keys=True, default=repr)), json.dumps(draft.as_spec(), sort_keys=True, default=repr))
        if key not in self._checks:
            if len(self._checks) >= MAX_KEPT_CHECKS:
                self._checks.clear()
            self._checks[key] = check_template(data, spec.path, draft)
        return self._checks[key]

    def _draft_problems(self, spec: TaskSpec, drafts: list[TemplateEdit]) -> list[str]:
        """`flanforge validate`'s problems for the spec with these templates (on its samples)."""
        try:
            draft_spec = parse_task_spec({**self._base_data(spec), "templates": [d.as_spec() for d in drafts]}, spec.path)
        except SpecError as e:
            return e.problems
        return spec_problems(draft_spec)

    def _text_problems(self, spec: TaskSpec, drafts: list[TemplateEdit], text: str, target: str) -> list[str]:
        """The new file's text loaded the way the catalog loads a spec: it must validate, say what
        the draft says, and leave the rest of the spec as it was."""
        with tempfile.TemporaryDirectory(prefix="flanforge-studio-") as folder:
            candidate = os.path.join(folder, f"{spec.name}.yaml")
            with open(candidate, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                data = load_spec_yaml(candidate)
                saved = parse_task_spec(data, target)
            except SpecError as e:
                return [p.replace(candidate, target) for p in e.problems]
        problems = spec_problems(saved)
        if saved.templates != tuple(parse_task_spec({**data, "templates": [d.as_spec() for d in drafts]}, target).templates):
            problems.append(f"{target}: the written templates would differ from the draft (a round-trip problem): not saved")
        before = self._base_data(spec)
        if {k: v for k, v in data.items() if k != "templates"} != {k: v for k, v in before.items() if k != "templates"}:
            problems.append(f"{target}: writing the templates would change other keys of the spec (a round-trip problem): not saved")
        return problems


def _task_summary(spec: TaskSpec, own: bool) -> dict[str, Any]:
    source = spec.source
    options: Any = None
    if spec.answers is not None:
        options = list(spec.answers.options) if isinstance(spec.answers.options, tuple) else f"per row: {spec.answers.options}"
    return {
        "name": spec.name,
        "cluster": spec.cluster,
        "collection": spec.collection,
        "description": spec.description,
        "license": spec.license,
        "metric": spec.metric,
        "path": spec.path,
        "own": own,
        "source": {"kind": source.kind, "path": source.path, "name": source.name, "splits": dict(source.splits)},
        "counts": {
            "templates": len(spec.templates),
            "inverted": sum(t.inverted for t in spec.templates),
            "options": sum(bool(spec.answers) and t.show_options and not (t.inverted or t.free_text) for t in spec.templates),
            "samples": len(spec.samples),
        },
        "options": options,
    }


def _variables(spec: TaskSpec) -> list[str]:
    """The names a template of the task can use: its fields (every column when it maps none),
    derived values, and the answer's."""
    mapped = list(spec.fields) if spec.fields is not None else sorted({k for row in spec.samples for k in row})
    return [*mapped, *spec.derived, *(("options", "answer", "answer_index") if spec.answers is not None else ())]


def _read(shards: Sequence[Any]) -> Iterator[PageRow | ReadProblem]:
    for shard in shards:
        for item in read_shard(shard):
            yield item if isinstance(item, ReadProblem) else PageRow(item.example_id, item.row)


def _page(items: Iterator[PageRow | ReadProblem], offset: int, limit: int) -> tuple[list[PageRow], list[str], bool]:
    """Rows offset..offset+limit of a read, the read problems met on the way, and whether more follow."""
    rows: list[PageRow] = []
    problems: list[str] = []
    seen = 0
    for item in items:
        if isinstance(item, ReadProblem):
            if len(problems) < MAX_PAGE_ROWS:
                problems.append(f"{item.where}: {item.error}")
            continue
        if seen >= offset + limit:
            return rows, problems, True
        if seen >= offset:
            rows.append(item)
        seen += 1
    return rows, problems, False
