"""Super-NaturalInstructions (NIv2) task files: one JSON object per task, its `Instances` the rows.

A task file keeps the task's instruction (`Definition`), worked examples (`Positive Examples`) and
metadata beside its instances, and the templates need them on every row (the definition, the
examples of a few-shot prompt, the label set of an options prompt), so each row carries them:

    id, input, output        the instance; `output` is its list of acceptable outputs (a spec's
                             `explode` makes one row per output, or keeps the first)
    task_name                the file name without `.json`
    definition               the `Definition` strings, joined by a blank line (upstream: one)
    positive_examples        [{input, output, explanation}] (explanation '' where a file has none)
    label_set                the task's labels, sorted, when its outputs form one (rule below); else []
    categories, source, domains, reasoning, input_language, output_language,
    instruction_language, instance_license      the file's lists of strings ([] when absent)

Label set: every valid instance has exactly one output, there are between 2 and LABEL_SET_MAX
distinct outputs, and at least twice as many instances as labels (so a free-text task with a
handful of instances is not mistaken for a classification task).

A task file is one JSON document, so it is parsed whole and then handed on row by row; files over
MAX_TASK_FILE_BYTES are refused at planning (and at reading, for a `.gz` whose size only shows
then), naming the file. Upstream files are all below GitHub's 100 MB file limit. Each file is one
read shard, and each file is a task of its own (`<spec>_<task_name>`, build.plan_build), as
Flan 2022 mixed NIv2's tasks. A file that is not an NIv2 task file is one dead letter naming the file and what is
wrong; a bad instance is a dead letter naming its index (`Instances[7]`), the others are read.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import replace
from typing import Any, Iterator

from flanforge.beam_pipelines.sources.base import RawRow, SourceShard, quote, source_error
from flanforge.beam_pipelines.sources.files import open_text_bytes, starts_with
from flanforge.beam_pipelines.sources.jsonl import parse_json_line

MAX_TASK_FILE_BYTES = 128 << 20
LABEL_SET_MAX = 10
# NIv2 key -> row field, for the metadata lists of strings.
METADATA_KEYS = {
    "Categories": "categories",
    "Source": "source",
    "Domains": "domains",
    "Reasoning": "reasoning",
    "Input_language": "input_language",
    "Output_language": "output_language",
    "Instruction_language": "instruction_language",
    "Instance License": "instance_license",
}
_TOO_LARGE = f"larger than {MAX_TASK_FILE_BYTES >> 20} MiB, the limit for an NIv2 task file (it is parsed whole); split its Instances into several files"


def plan_file(whole: SourceShard) -> list[SourceShard]:
    """The whole file as one shard, ids from the instances' own `id`; refused when too large or not a JSON object."""
    if whole.file_bytes > MAX_TASK_FILE_BYTES:
        raise source_error(whole.task, whole.split, f"{whole.location}: {whole.file_bytes} bytes, {_TOO_LARGE}")
    if not starts_with(whole.location, b"{"):
        raise source_error(whole.task, whole.split, f"{whole.location} is not an NIv2 task file (one JSON object with `Definition` and `Instances`)")
    return [replace(whole, id_field=whole.id_field or "id")]


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of strings")
    return value


def _examples(doc: dict[str, Any]) -> list[dict[str, str]]:
    value = doc.get("Positive Examples", [])
    if not isinstance(value, list):
        raise ValueError("'Positive Examples' must be a list")
    out = []
    for i, example in enumerate(value):
        if not (isinstance(example, dict) and isinstance(example.get("input"), str) and isinstance(example.get("output"), str)):
            raise ValueError(f"'Positive Examples'[{i}] must be an object with string `input` and `output`")
        explanation = example.get("explanation", "")
        if not isinstance(explanation, str):
            raise ValueError(f"'Positive Examples'[{i}]: `explanation` must be a string")
        out.append({"input": example["input"], "output": example["output"], "explanation": explanation})
    return out


def task_fields(doc: Any, task_name: str) -> dict[str, Any]:
    """The task-level fields every row of the file carries (all but `label_set`); ValueError says what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in ("Definition", "Instances") if k not in doc]
    if missing:
        raise ValueError(f"no {' or '.join(repr(k) for k in missing)} key (has {', '.join(repr(k) for k in list(doc)[:8])})")
    definition = _strings(doc, "Definition")
    if not definition:
        raise ValueError("'Definition' is empty")
    if not isinstance(doc["Instances"], list):
        raise ValueError("'Instances' must be a list")
    fields: dict[str, Any] = {"task_name": task_name, "definition": "\n\n".join(definition), "positive_examples": _examples(doc)}
    fields.update({name: _strings(doc, key) for key, name in METADATA_KEYS.items()})
    return fields


def instance_problem(instance: Any) -> str:
    """Why an instance cannot be a row, or ''."""
    if not isinstance(instance, dict):
        return f"an instance must be an object, got {type(instance).__name__}"
    for key in ("id", "input"):
        if not isinstance(instance.get(key), str):
            return f"instance `{key}` must be a string, got {type(instance.get(key)).__name__}"
    output = instance.get("output")
    if not isinstance(output, list) or not all(isinstance(o, str) for o in output):
        return "instance `output` must be a list of strings"
    if not output:
        return "instance `output` is empty: no acceptable output"
    return ""


def label_set(outputs: list[list[str]]) -> list[str]:
    """The sorted labels when the instances' outputs form a small label set (module docstring), else []."""
    if not outputs or any(len(o) != 1 for o in outputs):
        return []
    labels = sorted({o[0] for o in outputs})
    if 2 <= len(labels) <= LABEL_SET_MAX and len(outputs) >= 2 * len(labels):
        return labels
    return []


def task_name(path: str) -> str:
    """The task a task file holds: its file name without `.json` (`task1193_food_course_classification`)."""
    name = posixpath.basename(path)
    for suffix in (".gz", ".json"):
        name = name.removesuffix(suffix)
    return name


def _load(location: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parsed file and its task-level fields; ValueError says why it is not a task file."""
    with open_text_bytes(location) as f:
        data = f.read(MAX_TASK_FILE_BYTES + 1)
    if len(data) > MAX_TASK_FILE_BYTES:
        raise ValueError(f"not read: {_TOO_LARGE}")
    try:
        doc = parse_json_line(data)
        return doc, task_fields(doc, task_name(location))
    except (ValueError, RecursionError) as e:  # JSON and decoding errors are ValueErrors
        raise ValueError(f"not an NIv2 task file: {str(e)[:200]}") from None


def task_file_metadata(location: str) -> dict[str, Any]:
    """What the manifest records of the task a file holds: {"niv2": {task_name, categories, source,
    domains, reasoning, *_language, instance_license}}. {} for a file that is not a task file: its
    read already reports that, as a dead letter."""
    try:
        _, fields = _load(location)
    except ValueError:
        return {}
    return {"niv2": {"task_name": fields["task_name"], **{name: fields[name] for name in METADATA_KEYS.values()}}}


def read(shard: SourceShard) -> Iterator[RawRow]:
    """Rows of the instances in file order; positions are instance indices (`Instances[i]`)."""
    try:
        doc, fields = _load(shard.location)
    except ValueError as e:
        yield RawRow(-1, None, str(e))
        return
    instances = doc["Instances"]
    problems = [instance_problem(x) for x in instances]
    fields["label_set"] = label_set([x["output"] for x, p in zip(instances, problems) if not p])
    for i, (instance, problem) in enumerate(zip(instances, problems)):
        where = f"Instances[{i}]"
        if problem:
            yield RawRow(i, None, problem, where, quote(json.dumps(instance, ensure_ascii=False)))
            continue
        yield RawRow(i, {"id": instance["id"], "input": instance["input"], "output": instance["output"], **fields}, "", where)
