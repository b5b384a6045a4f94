"""promptsource's `templates.yaml` files -> task spec data, as `catalog.parse_task_spec` validates it.

One promptsource file holds the prompts of one dataset or dataset subset; it becomes one task,
`p3_<dataset>[_<subset>]`, reading the hub dataset of that name (templates/promptsource_datasets.yaml
says which hub id and cluster, and `--source` replaces the hub as for any task). Each prompt
becomes a template that keeps promptsource's own form, `jinja` (rendered, then split on |||) and
`answer_choices`, which render.py renders with promptsource's semantics, and keeps the prompt's id,
name, reference and metadata. Nothing is edited and nothing is rendered here: the same data serves
`flanforge import promptsource DIR --output OUT`, which writes it as ordinary YAML specs, and a
catalog that reads the collection where it is (`--templates DIR`). docs/PROMPTSOURCE.md has the rules.
"""
from __future__ import annotations

import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TextIO

import yaml

from flanforge.beam_pipelines.catalog import (
    _YAML_LOADER,
    SpecError,
    TaskSpec,
    _glob,
    _load_yaml,
    _one_line,
    _root,
    _schema_validator,
    parse_task_spec,
)
from flanforge.schemas.files import is_remote
from flanforge.templates import TEMPLATES_DIR

TEMPLATES_FILE = "templates.yaml"
TASK_PREFIX = "p3_"
DATASETS_TABLE = TEMPLATES_DIR / "promptsource_datasets.yaml"
LICENSE = "The dataset's own license (see its card on the Hugging Face hub); the prompts are promptsource's, Apache-2.0."
METADATA_KEYS = ("original_task", "choices_in_prompt", "metrics", "languages")
# promptsource's metric names -> the spec's metric; a task takes its prompts' most common one (ties:
# this order), exact_match when none of them has one here (Other, correlations, AUC, ...)
METRICS = {"Accuracy": "accuracy", "ROUGE": "rouge", "BLEU": "bleu", "Squad": "f1", "COQA F1": "f1", "MultiRC": "f1", "Trivia QA": "exact_match"}
DEFAULT_METRIC = "exact_match"


class _PromptsourceLoader(_YAML_LOADER):  # type: ignore[misc, valid-type]
    """The catalog's safe loader with promptsource's two tags read as plain mappings (never as
    Python objects); any other tag is still refused."""


def _plain_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    return loader.construct_mapping(node, deep=True)


_PromptsourceLoader.add_constructor("!Template", _plain_mapping)
_PromptsourceLoader.add_constructor("!TemplateMetadata", _plain_mapping)


@dataclass(frozen=True)
class DatasetEntry:
    cluster: str
    hub: str
    splits: Mapping[str, str]


@dataclass(frozen=True)
class DatasetTable:
    """templates/promptsource_datasets.yaml: per dataset or dataset/subset, its cluster, hub id and splits."""

    default_cluster: str
    default_splits: Mapping[str, str]
    entries: Mapping[str, Mapping[str, Any]]

    def entry(self, dataset: str, subset: str | None) -> DatasetEntry:
        found = {**self.entries.get(dataset, {}), **(self.entries.get(f"{dataset}/{subset}", {}) if subset else {})}
        return DatasetEntry(found.get("cluster", self.default_cluster), found.get("hub", dataset), dict(found.get("splits", self.default_splits)))


def load_table(path: str | Path = DATASETS_TABLE) -> DatasetTable:
    data = _load_yaml(str(path))
    entries = data.get("datasets") if isinstance(data, dict) else None
    if not (isinstance(data, dict) and isinstance(data.get("default_cluster"), str) and _is_splits(data.get("default_splits")) and isinstance(entries, dict)):
        raise SpecError([f"{path}: expected default_cluster, default_splits and a datasets mapping"])
    bad = [
        key for key, e in entries.items()
        if not isinstance(e, dict) or set(e) - {"cluster", "hub", "splits"} or ("splits" in e and not _is_splits(e["splits"]))
    ]
    if bad:
        raise SpecError([f"{path}: datasets: {', '.join(map(str, bad))}: expected {{cluster, hub, splits}} (splits: output split -> hub split)"])
    return DatasetTable(data["default_cluster"], dict(data["default_splits"]), entries)


def _is_splits(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def task_name(dataset: str, subset: str | None) -> str:
    """`p3_super_glue_rte` for super_glue/rte, `p3_super_glue_wsc_fixed` for super_glue/wsc.fixed."""
    return TASK_PREFIX + _slug(dataset if subset is None else f"{dataset}_{subset}")


def _template_id(name: str, prompt_id: str, taken: set[str]) -> str:
    """The prompt's name as an id (`gpt_3_style`); the promptsource id's start is added when two
    names read the same."""
    base = _slug(name) or "prompt"
    for candidate in (base, f"{base}_{_slug(prompt_id)[:8]}", f"{base}_{_slug(prompt_id)}"):
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    raise SpecError([f"prompt {prompt_id!r}: its id is used twice in the file"])


def _template(prompt: Any, where: str) -> dict[str, Any]:
    """One !Template as a spec template (its id is set by the caller)."""
    if not isinstance(prompt, dict):
        raise SpecError([f"{where}: expected a !Template mapping, got {type(prompt).__name__}"])
    problems = [
        f"{where}: field {key}: expected a non-empty string"
        for key in ("id", "name", "jinja")
        if not (isinstance(prompt.get(key), str) and prompt[key].strip())
    ]
    choices = prompt.get("answer_choices")
    if choices is not None and not isinstance(choices, str):
        problems.append(f"{where}: field answer_choices: expected Jinja text or null, got {type(choices).__name__}")
    metadata = prompt.get("metadata") or {}
    if not isinstance(metadata, dict):
        problems.append(f"{where}: field metadata: expected a !TemplateMetadata mapping")
    if problems:
        raise SpecError(problems)
    origin = {"id": prompt["id"], "name": prompt["name"], "reference": prompt.get("reference"), **{k: metadata.get(k) for k in METADATA_KEYS}}
    if "task_template" in prompt:
        origin["task_template"] = prompt["task_template"]
    template: dict[str, Any] = {"jinja": prompt["jinja"]}
    if choices and choices.strip():
        # the prompt itself shows the choices or not: flanforge appends no options block to it
        template.update(answer_choices=choices, show_options=bool(metadata.get("choices_in_prompt")))
    template["promptsource"] = origin
    return template


def _metric(templates: list[dict[str, Any]]) -> str:
    named = Counter(METRICS[m] for t in templates for m in t["promptsource"].get("metrics") or () if m in METRICS)
    if not named:
        return DEFAULT_METRIC
    order = list(dict.fromkeys(METRICS.values()))
    return max(named, key=lambda m: (named[m], -order.index(m)))


def spec_data(doc: Any, file: str, table: DatasetTable, where: str | None = None) -> dict[str, Any]:
    """One templates.yaml document -> the task spec's data. `file` is the file's path inside the
    collection (kept in the spec), `where` how errors name it (default `file`). Raises SpecError
    naming the file and prompt for anything that is not promptsource's format."""
    where = where or file
    if not (isinstance(doc, dict) and isinstance(doc.get("dataset"), str) and doc["dataset"]):
        raise SpecError([f"{where}: top level: expected promptsource's format, a mapping with dataset, subset and templates"])
    dataset, subset = doc["dataset"], doc.get("subset")
    if subset is not None and not (isinstance(subset, str) and subset):
        raise SpecError([f"{where}: field subset: expected a name or nothing, got {_one_line(repr(subset), 60)}"])
    prompts = doc.get("templates")
    if not (isinstance(prompts, dict) and prompts):
        raise SpecError([f"{where}: field templates: no prompts"])
    templates: list[dict[str, Any]] = []
    problems: list[str] = []
    taken: set[str] = set()
    for key, prompt in prompts.items():
        try:
            template = _template(prompt, f"{where}: prompt {_one_line(key, 60)}")
            templates.append({"id": _template_id(prompt["name"], prompt["id"], taken), **template})
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    entry = table.entry(dataset, subset)
    label = dataset if subset is None else f"{dataset}/{subset}"
    source: dict[str, Any] = {"kind": "hf", "path": entry.hub}
    if subset is not None:
        source["name"] = subset
    source["splits"] = dict(entry.splits)
    return {
        "name": task_name(dataset, subset),
        "cluster": entry.cluster,
        "description": f"{label} through promptsource's {len(templates)} prompts (the P3 collection), imported from {file}.",
        "license": LICENSE,
        "metric": _metric(templates),
        "promptsource": {"dataset": dataset, "subset": subset, "file": file},
        "source": source,
        "templates": templates,
        "samples": [],
    }


def template_files(root: str) -> list[str]:
    """The collection's templates.yaml files: <dataset>/ or <dataset>/<subset>/ (or <user>/<dataset>/)."""
    return sorted(_glob(root, f"*/{TEMPLATES_FILE}") + _glob(root, f"*/*/{TEMPLATES_FILE}"))


def is_collection(root: str) -> bool:
    """Whether a templates directory is a promptsource collection: it has templates.yaml files at
    one or two levels and no other specs (a task spec named `templates` would not pass for one)."""
    return bool(template_files(root)) and all(posixpath.basename(p) == TEMPLATES_FILE for p in _glob(root, "*/*.yaml"))


def import_collection(directory: str | Path, table: DatasetTable | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(path, spec data) of every templates.yaml under `directory` (local or gs://), sorted by
    path; every problem of every file in one SpecError."""
    root = _root(directory)
    files = template_files(root)
    if not files:
        raise SpecError([f"{root}: no promptsource {TEMPLATES_FILE} files (expected <dataset>/{TEMPLATES_FILE} or <dataset>/<subset>/{TEMPLATES_FILE})"])
    table = table or load_table()
    imported: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    names: dict[str, str] = {}
    for path in files:
        file = path[len(root) + 1 :].replace("\\", "/")
        try:
            data = spec_data(_load_yaml(path, _PromptsourceLoader, aliases=True), file, table, where=path)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        if data["name"] in names:
            problems.append(f"{path}: task name {data['name']} is also the name of {names[data['name']]}")
        names[data["name"]] = path
        imported.append((path, data))
    if problems:
        raise SpecError(problems)
    return imported


def load_tasks(directory: str | Path, clusters: Mapping[str, str]) -> dict[str, TaskSpec]:
    """The collection as TaskSpecs, to overlay the bundled catalog (catalog.load_catalog)."""
    validator = _schema_validator()
    tasks: dict[str, TaskSpec] = {}
    problems: list[str] = []
    for path, data in import_collection(directory):
        try:
            spec = parse_task_spec(data, path, validator)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        if spec.cluster not in clusters:
            problems.append(f"{DATASETS_TABLE}: {path}: cluster {spec.cluster!r} is not a bundled cluster")
        tasks[spec.name] = spec
    if problems:
        raise SpecError(problems)
    return tasks


class _SpecDumper(yaml.SafeDumper):
    """YAML that reads like the bundled specs: multi-line text (templates) as block scalars, and
    values that are shared (promptsource's files share metadata) written out, since specs refuse aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_SpecDumper.add_representer(str, _represent_text)


def spec_yaml(data: Mapping[str, Any]) -> str:
    """A spec file's text: a header saying where it came from, then the data (it loads back equal)."""
    origin = data["promptsource"]["file"]
    header = f"# Imported from promptsource's {origin} by `flanforge import promptsource`: import again rather than edit.\n"
    return header + yaml.dump(dict(data), Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=120)


def write_specs(imported: list[tuple[str, dict[str, Any]]], output: str | Path) -> list[Path]:
    """Write each spec to OUTPUT/<cluster>/<task>.yaml (an overlay for `--templates OUTPUT`); the
    folder must be new or empty, so a re-import never mixes with an older one."""
    if is_remote(str(output)):
        raise SpecError([f"--output {output}: import writes a local folder (copy it to Cloud Storage afterwards)"])
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpecError([f"--output {out}: not an empty folder (remove it, or choose another, to import again)"])
    written = []
    for _, data in imported:
        target = out / data["cluster"] / f"{data['name']}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec_yaml(data), encoding="utf-8")
        written.append(target)
    return written


def run_import(directory: str, output: str, out: TextIO) -> int:
    """`flanforge import promptsource DIR --output OUT`: write the specs, then say which prompts do
    not compile in flanforge's sandbox (a build of their task stops until they do)."""
    from flanforge.beam_pipelines.render import CompiledTask  # rendering is needed only for this check

    imported = import_collection(directory)
    validator = _schema_validator()
    specs = [parse_task_spec(data, path, validator) for path, data in imported]  # what --templates OUT will load
    not_compiling: list[str] = []
    for spec in specs:
        try:
            CompiledTask(spec)
        except SpecError as e:
            not_compiling.extend(e.problems)
    write_specs(imported, output)
    prompts = sum(len(s.templates) for s in specs)
    print(f"imported {len(specs)} promptsource files, {prompts} prompts, as {len(specs)} tasks in {output}/<cluster>/<task>.yaml", file=out)
    for problem in not_compiling:
        print(f"does not compile: {problem}", file=out)
    example = specs[0].name
    print(f"build one with: flanforge build --templates {output} --tasks {example} --source {example}=ROWS.jsonl --output OUT", file=out)
    return 0
