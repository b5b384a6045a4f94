"""Line-aligned files: one file per field, line N of every file is row N (e-SNLI's s1/s2/labels
files, PIQA's JSONL plus its labels file).

A split names its files as `field: path`. A plain file gives the field its line's text (without
the line ending); a `.jsonl` file gives the field the parsed object, and the field name `"*"`
merges the object's keys into the row. Files of different lengths cannot be aligned, so
planning counts the lines of every file and refuses a mismatch, naming the files.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Iterator, Mapping

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.sources.base import RawRow, SourceShard, quote, source_error
from flanforge.beam_pipelines.sources.files import expand_files, open_text_bytes
from flanforge.beam_pipelines.sources.jsonl import parse_json_line

MERGE = "*"


def _is_json(path: str) -> bool:
    return path.removesuffix(".gz").endswith((".jsonl", ".json"))


def _count_lines(path: str) -> int:
    n, last = 0, b"\n"
    with open_text_bytes(path) as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def plan_parts(spec: TaskSpec, split: str, parts: Mapping[str, str]) -> list[SourceShard]:
    """One shard per split (lines cannot be matched across byte ranges of different files)."""
    resolved: list[tuple[str, str]] = []
    size = 0
    for field, pattern in sorted(parts.items()):
        files = expand_files(spec.name, split, pattern)
        if len(files) != 1:
            raise source_error(spec.name, split, f"aligned field {field!r}: {pattern!r} must name one file, it matched {len(files)}")
        resolved.append((field, files[0][0].path))
        size += files[0][0].size
    lengths = {path: _count_lines(path) for _, path in resolved}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{path}: {n} lines" for path, n in lengths.items())
        raise source_error(spec.name, split, f"line-aligned files differ in length ({listed})")
    first = resolved[0][1]
    return [
        SourceShard(
            task=spec.name, split=split, kind="aligned", location=first, start=0, end=-1, id_field=spec.source.id_field,
            id_prefix=split, file_bytes=size,
            parts=tuple(resolved), options=spec.source.read,
        )
    ]


def plan(spec: TaskSpec, split: str) -> list[SourceShard]:
    parts = spec.source.splits[split]
    if not isinstance(parts, Mapping):
        raise source_error(spec.name, split, "an aligned source names its files per field (split: {field: path, ...})")
    return plan_parts(spec, split, parts)


def read(shard: SourceShard) -> Iterator[RawRow]:
    """Row N from line N of every file; positions are line numbers (from 1)."""
    with ExitStack() as stack:
        files = [(field, _is_json(path), stack.enter_context(open_text_bytes(path))) for field, path in shard.parts]
        number = 0
        while True:
            lines = [(field, is_json, f.readline()) for field, is_json, f in files]
            if not any(line for _, _, line in lines):
                return
            number += 1
            row: dict[str, Any] = {}
            try:
                for field, is_json, line in lines:
                    value = parse_json_line(line) if is_json else line.rstrip(b"\r\n").decode(shard.options.encoding)
                    if field == MERGE:
                        if not isinstance(value, dict):
                            raise ValueError(f"a '*' field needs a JSON object, got {type(value).__name__}")
                        row.update(value)
                    else:
                        row[field] = value
            except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSON errors are ValueErrors
                text = " | ".join(quote(line) for _, _, line in lines)
                yield RawRow(number, None, f"{field}: {str(e)[:200]}", f"line {number}", quote(text))
                continue
            yield RawRow(number, row, "", f"line {number}")
