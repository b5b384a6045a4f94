"""JSON Lines: byte-range shards, a fast exact line parser, and seeking straight to chosen rows.

A plain file is cut into byte ranges; a line belongs to the shard its first byte falls in. A
row's position is its byte offset, so a second pass (`read_at`) seeks to each row it wants.
A gzipped file is one shard (no random access).
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any, Iterator, Mapping

import orjson

from flanforge.beam_pipelines.sources.base import RawRow, SourceShard, quote, source_error
from flanforge.beam_pipelines.sources.files import open_source, open_text_bytes, starts_with

# Byte size of one read shard.
SHARD_BYTES = 8 << 20

# Digits mapped to one byte, so "a run of 19 digits" is a plain substring search (C speed; a regex
# scan of a long line costs more than orjson's whole parse).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


def parse_json_line(line: bytes) -> Any:
    """One JSON Lines record, as `json.loads` reads it, at orjson's speed.

    orjson parses ~3x faster but turns integers beyond 64 bits into floats and rejects a few
    things the standard parser accepts (NaN, 1e400, lone surrogates); a line with a run of 19 or
    more digits, or one orjson rejects, goes to `json.loads`, so the result (or the error
    message) is always the standard library's."""
    if _LONG_DIGIT_RUN not in line.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    value = json.loads(line)
    if b"\\u" in line.lower() and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate (an escape such as \\ud800 without its pair): not valid Unicode text")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """Whether json.loads produced a string that cannot be UTF-8 (only possible from \\uD800-\\uDFFF
    escapes without their pair; orjson refuses those, so only the fallback path checks)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def plan_file(whole: SourceShard) -> list[SourceShard]:
    if starts_with(whole.location, b"["):
        raise source_error(whole.task, whole.split, f"{whole.location} is a JSON array; flanforge reads JSON Lines (one object per line)")
    if whole.location.endswith(".gz"):
        return [whole]
    n = max(1, math.ceil(whole.file_bytes / SHARD_BYTES))
    return [replace(whole, start=i * whole.file_bytes // n, end=(i + 1) * whole.file_bytes // n) for i in range(n)]


def _parse(offset: int, line: bytes) -> RawRow:
    where = f"byte {offset}"
    try:
        row = parse_json_line(line)
    except (ValueError, RecursionError) as e:
        return RawRow(offset, None, f"malformed JSON: {str(e)[:200]}", where, quote(line))
    if not isinstance(row, dict):
        return RawRow(offset, None, f"expected a JSON object, got {type(row).__name__}", where, quote(line))
    return RawRow(offset, row, "", where)


def read(shard: SourceShard) -> Iterator[RawRow]:
    """Rows of the lines that start inside [start, end); positions are byte offsets."""
    end = math.inf if shard.end < 0 else shard.end
    with open_text_bytes(shard.location) as f:
        if shard.start > 0:
            f.seek(shard.start - 1)
            f.readline()  # finish the line that straddles the boundary: it belongs to the previous shard
        while True:
            offset = f.tell()
            if offset >= end:
                return
            line = f.readline()
            if not line:
                return
            if line.strip():
                yield _parse(offset, line)


def read_at(shard: SourceShard, positions: Mapping[int, int]) -> Iterator[RawRow]:
    """The rows at these byte offsets, each parsed on its own: a second pass costs what it keeps."""
    if shard.location.endswith(".gz"):
        wanted = set(positions)
        yield from (r for r in read(shard) if r.position in wanted)
        return
    with open_source(shard.location) as f:
        for position in sorted(positions):
            f.seek(position)
            yield _parse(position, f.readline())
