"""CSV and TSV, read as text: every cell a string unless the source declares its type.

Files are streamed line by line with Python's csv module, so a record's first line number and
raw text are known (dead letters quote them), quoted newlines work at any file size, memory
stays flat, and nothing guesses types (`0012` stays `0012`, an empty cell is ''). Each file is
one read shard: with quoted newlines a byte range cannot be cut safely.

Options (`ReadOptions`): header (or not, with `columns`), delimiter, quoting (on for CSV, off
for TSV, where '"' is an ordinary character), encoding (any ASCII-compatible codec; a line that
does not decode is a dead letter naming its byte offset), and per-column `types`.
"""
from __future__ import annotations

import codecs
import csv
import sys
from typing import Any, Callable, Iterator

from flanforge.beam_pipelines.sources.base import RawRow, ReadOptions, SourceShard, quote, source_error
from flanforge.beam_pipelines.sources.files import open_text_bytes

# A cell may be as large as a whole document (summarization sources), far above csv's 128 KiB default.
_FIELD_SIZE_LIMIT = min(sys.maxsize, 1 << 30)

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _to_bool(text: str) -> bool:
    try:
        return _BOOLS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, yes/no)") from None


TYPES: dict[str, Callable[[str], Any]] = {"string": str, "int": int, "float": float, "bool": _to_bool}


def check_options(kind: str, options: ReadOptions, where: str) -> None:
    """Refuse options that cannot read a file, before any worker tries (`where` names the source)."""
    if not options.header and not options.columns:
        raise ValueError(f"{where}: header: false needs `columns` (the names of the {kind.upper()} columns, in order)")
    try:
        codec = codecs.lookup(options.encoding)
    except LookupError:
        raise ValueError(f"{where}: unknown encoding {options.encoding!r}") from None
    if "\n,\t\"".encode(codec.name) != b"\n,\t\"":
        raise ValueError(f"{where}: encoding {options.encoding!r} is not ASCII-compatible; convert the file to UTF-8")
    if options.delimiter is not None and len(options.delimiter) != 1:
        raise ValueError(f"{where}: delimiter must be one character, got {options.delimiter!r}")
    unknown = sorted({t for _, t in options.types} - set(TYPES))
    if unknown:
        raise ValueError(f"{where}: unknown column type(s) {', '.join(unknown)}; use {', '.join(TYPES)}")


def plan_file(whole: SourceShard) -> list[SourceShard]:
    try:
        check_options(whole.kind, whole.options, whole.location)
    except ValueError as e:
        raise source_error(whole.task, whole.split, str(e)) from None
    if whole.options.header and whole.options.columns:
        width = len(_header_cells(whole))
        if width != len(whole.options.columns):
            raise source_error(
                whole.task, whole.split,
                f"{whole.location}: `columns` names {len(whole.options.columns)} columns, its header line has {width}",
            )
    return [whole]


def _dialect(kind: str, options: ReadOptions) -> dict[str, Any]:
    quoting = options.quoting if options.quoting is not None else kind == "csv"
    delimiter = options.delimiter or ("\t" if kind == "tsv" else ",")
    if quoting:
        return dict(delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    return dict(delimiter=delimiter, quoting=csv.QUOTE_NONE)


class _Lines:
    """Decoded lines for csv.reader, remembering where the current record started and whether
    any of its lines failed to decode."""

    def __init__(self, f, encoding: str):
        self._f = f
        self._encoding = encoding
        self.number = 0  # lines read so far
        self.offset = 0  # byte offset of the next line
        self.record_line = 1
        self.record_raw: list[bytes] = []
        self.decode_error = ""

    def start_record(self) -> None:
        self.record_line = self.number + 1
        self.record_raw = []
        self.decode_error = ""

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        raw = self._f.readline()
        if not raw:
            raise StopIteration
        offset, self.offset = self.offset, self.offset + len(raw)
        self.number += 1
        self.record_raw.append(raw)
        if self.number == 1 and raw.startswith(codecs.BOM_UTF8) and codecs.lookup(self._encoding).name == "utf-8":
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            return raw.decode(self._encoding)
        except UnicodeDecodeError as e:
            if not self.decode_error:
                self.decode_error = f"not valid {self._encoding} at byte {offset + e.start} ({e.reason})"
            return raw.decode(self._encoding, errors="replace")


def read(shard: SourceShard) -> Iterator[RawRow]:
    """Rows of the file; positions are the line numbers (from 1) where records start."""
    options = shard.options
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
    types = {name: TYPES[t] for name, t in options.types}
    with open_text_bytes(shard.location) as f:
        lines = _Lines(f, options.encoding)
        reader = csv.reader(lines, **_dialect(shard.kind, options))
        names: list[str] | None = list(options.columns) if not options.header else None
        while True:
            lines.start_record()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield _problem(lines, f"malformed {shard.kind.upper()}: {e}")
                continue
            if not cells or cells == [""] and not lines.decode_error:
                continue  # a blank line
            if lines.decode_error:
                yield _problem(lines, lines.decode_error)
                continue
            if names is None:  # the header line (`columns`, when given, rename it)
                names = list(options.columns) or cells
                continue
            if len(cells) != len(names):
                yield _problem(lines, f"expected {len(names)} columns, got {len(cells)}")
                continue
            row = dict(zip(names, cells))
            try:
                for name, convert in types.items():
                    if name in row:
                        row[name] = convert(row[name]) if row[name] != "" else None
            except ValueError as e:
                yield _problem(lines, f"column {name!r}: {e}")
                continue
            yield RawRow(lines.record_line, row, "", f"line {lines.record_line}")


def _header_cells(shard: SourceShard) -> list[str]:
    """The first non-blank record of the file (its header line)."""
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
    with open_text_bytes(shard.location) as f:
        for cells in csv.reader(_Lines(f, shard.options.encoding), **_dialect(shard.kind, shard.options)):
            if cells:
                return cells
    return []


def _problem(lines: _Lines, error: str) -> RawRow:
    return RawRow(lines.record_line, None, error, f"line {lines.record_line}", quote(b"".join(lines.record_raw)))
