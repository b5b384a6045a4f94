"""Planning reads on the launcher: every source of a task cut into `SourceShard`s.

Sources come from the spec (`source:`) or from `--source TASK[:SPLIT]=PATH[#OPTIONS]`; paths and
globs are expanded, and missing, empty or unreadable sources fail here, before any worker
starts, with the task, split and path in the message.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Mapping

from flanforge.beam_pipelines.catalog import ReadOptions, SpecError, TaskSpec, read_options
from flanforge.beam_pipelines.sources import hub
from flanforge.beam_pipelines.sources.base import SourceError, SourceShard, source_error
from flanforge.beam_pipelines.sources.files import expand_files
from flanforge.beam_pipelines.sources.kinds import FILE_KINDS, KINDS, kind_for_path
from flanforge.schemas.files import first_line, is_remote

_FLAGS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_DELIMITERS = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def split_source_argument(text: str) -> tuple[str, str | None, dict[str, object]]:
    """`PATH#format=tsv,header=false,columns=a|b|c` -> (path, format or None, option fields).

    Options after '#': format, header, columns (names separated by '|'), delimiter (a character
    or tab/comma/semicolon/pipe/space), quoting, encoding, types (name:type|...), explode,
    explode_keep, with the meaning the spec's `source` keys have; they apply on top of the spec's
    own options when the file has the spec's format."""
    path, sep, fragment = text.partition("#")
    if not sep:
        return path, None, {}
    fields: dict[str, object] = {}
    fmt = None
    for item in filter(None, fragment.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"{text!r}: option {item!r} is not KEY=VALUE")
        if key == "format":
            fmt = value
        elif key in ("header", "quoting"):
            if value.lower() not in _FLAGS:
                raise ValueError(f"{text!r}: {key}={value!r} must be true or false")
            fields[key] = _FLAGS[value.lower()]
        elif key == "columns":
            fields[key] = value.split("|")
        elif key == "delimiter":
            fields[key] = _DELIMITERS.get(value, value)
        elif key == "types":
            fields[key] = dict(pair.split(":", 1) for pair in value.split("|") if ":" in pair)
        elif key in ("encoding", "explode", "explode_keep"):
            fields[key] = value
        else:
            raise ValueError(
                f"{text!r}: unknown option {key!r}; use format, header, columns, delimiter, quoting, encoding, types, explode, explode_keep"
            )
    if fmt is not None and fmt not in FILE_KINDS:
        raise ValueError(f"{text!r}: format={fmt!r}: choose from {', '.join(FILE_KINDS)}")
    if "explode_keep" in fields:
        fields["explode"] = {"field": fields.pop("explode", None), "keep": fields.pop("explode_keep")}
    elif "explode" in fields:
        fields["explode"] = {"field": fields["explode"]}
    try:
        read_options(fields)
    except SpecError as e:
        raise ValueError(f"{text!r}: {e}") from None
    return path, fmt, fields


def _spec_options(spec: TaskSpec, file_kind: str) -> ReadOptions:
    """The spec's read options for a file of this kind: all of them for the spec's own kind; only
    what shapes rows (column types, explode) for another kind, e.g. a TSV given to a hub task."""
    own = spec.source.read
    if file_kind == spec.source.kind:
        return own
    return ReadOptions(types=own.types, explode=own.explode, explode_keep=own.explode_keep)


def plan_files(
    spec: TaskSpec, split: str, pattern: str, kind: str | None = None, option_fields: Mapping[str, object] | None = None
) -> list[SourceShard]:
    """Shards of the files a path or glob names (or of a local save_to_disk directory).

    The kind is `kind` when given, else the spec's own kind if it claims its files (`niv2`), else
    each file's extension, else the spec's own file kind.
    Files are read with the spec's source options (`_spec_options`), `option_fields` on top."""
    if kind == "hf_disk" or (not kind and not is_remote(pattern) and os.path.isdir(pattern)):
        return hub.plan_disk_directory(spec, split, pattern, split)
    spec_kind = spec.source.kind if spec.source.kind in FILE_KINDS else None
    shards: list[SourceShard] = []
    wholes: dict[str, list[SourceShard]] = {}  # kind -> one shard per file, for the kind's cross-file check
    for info, rel in expand_files(spec.name, split, pattern):
        try:
            claimed = spec_kind if spec_kind and KINDS[spec_kind].claims_spec_files else None
            file_kind = kind or claimed or kind_for_path(info.path, fallback=spec_kind)
        except SourceError as e:
            raise source_error(spec.name, split, str(e)) from None
        opts = read_options(option_fields or {}, base=_spec_options(spec, file_kind))
        whole = SourceShard(
            task=spec.name, split=split, kind=file_kind, location=info.path, start=0, end=-1, id_field=spec.source.id_field,
            id_prefix=rel, file_bytes=info.size, options=opts,
        )
        wholes.setdefault(file_kind, []).append(whole)
        try:
            shards += KINDS[file_kind].plan_file(whole)
        except SourceError:
            raise
        except (OSError, ValueError, EOFError) as e:  # the file exists but cannot be read (pyarrow, gzip, decoding)
            raise source_error(spec.name, split, f"cannot read {info.path}: {first_line(e)}") from None
    for file_kind, files in sorted(wholes.items()):
        if KINDS[file_kind].check_files:
            KINDS[file_kind].check_files(files)
    if not shards:
        raise source_error(spec.name, split, f"source {pattern!r} has no rows")
    return shards


def _plan_spec_split(spec: TaskSpec, split: str) -> list[SourceShard]:
    """Shards of one split as the spec's own `source` describes it."""
    kind = KINDS[spec.source.kind]
    if kind.plan_split:
        return kind.plan_split(spec, split)
    return plan_files(spec, split, spec.source.splits[split], spec.source.kind)


def plan_reads(
    spec: TaskSpec, *, demo: bool, overrides: Mapping[str, str], splits: Mapping[str, str] | None = None
) -> list[SourceShard]:
    """Every read shard of one task.

    `overrides` maps split -> `PATH[#OPTIONS]` (from --source). `splits` maps the source splits
    to read to the output split they become (a held-out task reads validation as
    eval_zeroshot); None reads every split under its own name. In --demo, the spec's samples
    stand in for each split.
    """
    if demo and not overrides:
        return [s for out in sorted((splits or {"train": "train"}).values()) for s in KINDS["samples"].plan_split(spec, out)]
    available = overrides or spec.source.splits
    wanted = splits or {s: s for s in available}
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise SourceError(
            f"task {spec.name}: no {', '.join(missing)} split to read (has {', '.join(sorted(available))}); "
            f"give one with --source {spec.name}:{missing[0]}=PATH"
        )
    shards: list[SourceShard] = []
    for split in sorted(wanted):
        if overrides:
            path, fmt, fields = split_source_argument(overrides[split])
            shards += plan_files(spec, split, path, fmt, fields)
        else:
            shards += _plan_spec_split(spec, split)
    return [s if wanted[s.split] == s.split else replace(s, split=wanted[s.split]) for s in shards]


def tasks_per_file(spec: TaskSpec, shards: list[SourceShard]) -> dict[str, list[SourceShard]]:
    """Task name -> its read shards. A spec whose files each hold a task (every shard of a kind with
    `file_task`, NIv2) becomes one task per file, `<spec>_<file's task>` (the same file name in
    two splits is one task); any other spec, or its sample rows, stays one task."""
    kinds = [KINDS[s.kind].file_task for s in shards]
    if not shards or not all(kinds):
        return {spec.name: shards}
    out: dict[str, list[SourceShard]] = {}
    files: dict[tuple[str, str], str] = {}  # (task, split) -> its file
    for shard, file_task in zip(shards, kinds):
        assert file_task is not None
        name = f"{spec.name}_{_task_name_part(file_task(shard.location))}"
        other = files.setdefault((name, shard.split), shard.location)
        if other != shard.location:
            raise source_error(spec.name, shard.split, f"{other} and {shard.location} would both be task {name}: give each task's file once")
        out.setdefault(name, []).append(replace(shard, task=name))
    return out


def _task_name_part(text: str) -> str:
    """A file's task as part of a task name: lowercase letters, digits and `_`."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "task"
