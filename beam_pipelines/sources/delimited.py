"""CSV and TSV, read as text: every cell a string unless the source declares its type.

Files are streamed, so memory stays flat and quoted newlines work at any file size, and nothing
guesses types (`0012` stays `0012`, an empty cell is ''). Clean UTF-8 files go through pyarrow's
streaming reader with every column typed as a string; anything it cannot read exactly is read
line by line with Python's csv module, which knows each record's line number and raw text for
the dead letter. Each file is one read shard: with quoted newlines a byte range cannot be cut
safely.

Options (`ReadOptions`): header (or not, with `columns`), delimiter, quoting (on for CSV, off
for TSV, where '"' is an ordinary character), encoding (any ASCII-compatible codec; a line that
does not decode is a dead letter naming its byte offset), and per-column `types`.
"""
from __future__ import annotations

import codecs
import csv
import itertools
import sys
import zlib
from typing import Any, Callable, Iterator, Mapping

import pyarrow as pa
import pyarrow.csv as pacsv

from flanforge.beam_pipelines.sources.base import RawRow, ReadOptions, SourceShard, quote, source_error
from flanforge.beam_pipelines.sources.files import open_text_bytes

# pyarrow's read-ahead for the fast path: rows are handed on a block at a time, so memory stays flat.
_FAST_BLOCK_BYTES = 4 << 20
# A cell may be as large as a whole document (summarization sources), far above csv's 128 KiB default.
_FIELD_SIZE_LIMIT = min(sys.maxsize, 1 << 30)

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _to_bool(text: str) -> bool:
    try:
        return _BOOLS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, yes/no)") from None


TYPES: dict[str, Callable[[str], Any]] = {"string": str, "int": int, "float": float, "bool": _to_bool}
_ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}


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
    """Rows of the file; positions number the data records from 0 (dead letters say the line).

    A clean UTF-8 file (the common case) is read by pyarrow's streaming CSV reader, every column
    as a string, about 8x faster than line by line; at the first thing it cannot read exactly as
    the line reader would (a ragged row, a decode error, a cell that does not convert, a parse
    error) the line reader takes over from the record where it stopped, so both give the same
    rows and problems in the same order."""
    done = 0
    if codecs.lookup(shard.options.encoding).name == "utf-8":
        try:
            for raw in _read_fast(shard):
                yield raw
                done += 1
            return
        except (ValueError, pa.ArrowException, EOFError, OSError, zlib.error):
            pass  # from `done` on, the exact reader says what is wrong, where (or reads up to the damage)
    yield from itertools.islice(_read_exact(shard), done, None)


def _convert(row: dict[str, Any], types: Mapping[str, Callable[[str], Any]]) -> None:
    """Declared column types, in place; an empty cell of a typed column is null. ValueError names the column."""
    for name, convert in types.items():
        if name in row:
            value = row[name]
            try:
                row[name] = convert(value) if value != "" else None
            except ValueError as e:
                raise ValueError(f"column {name!r}: {e}") from None


def _read_fast(shard: SourceShard) -> Iterator[RawRow]:
    options = shard.options
    names = list(options.columns) or _header_cells(shard)
    quoting = _dialect(shard.kind, options).get("quoting") != csv.QUOTE_NONE
    declared = dict(options.types)
    # ints and floats are parsed by pyarrow (stricter than int()/float(): what it refuses, the
    # exact reader decides); booleans by _convert, whose spellings pyarrow does not share
    arrow_types = {name: _ARROW_TYPES.get(declared.get(name, "string"), pa.string()) for name in names}
    types = {name: TYPES[t] for name, t in declared.items() if t not in _ARROW_TYPES}
    with open_text_bytes(shard.location) as f:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if options.header else 0, block_size=_FAST_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(
                delimiter=options.delimiter or ("\t" if shard.kind == "tsv" else ","),
                quote_char='"' if quoting else False, double_quote=True, newlines_in_values=quoting, ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=arrow_types, null_values=[""], strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
        record = 0
        for batch in reader:
            for row in batch.to_pylist():
                if types:
                    _convert(row, types)
                yield RawRow(record, row)
                record += 1


def _read_exact(shard: SourceShard) -> Iterator[RawRow]:
    """Line by line with the csv module: every problem with its line number and text."""
    options = shard.options
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
    types = {name: TYPES[t] for name, t in options.types}
    record = 0
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
                problem: str | None = f"malformed {shard.kind.upper()}: {e}"
            else:
                if not cells or cells == [""] and not lines.decode_error:
                    continue  # a blank line
                if names is None:  # the header line (`columns`, when given, rename it)
                    names = list(options.columns) or cells
                    continue
                problem = lines.decode_error or None
                if problem is None and len(cells) != len(names):
                    problem = f"expected {len(names)} columns, got {len(cells)}"
                if problem is None:
                    row = dict(zip(names, cells))
                    try:
                        _convert(row, types)
                    except ValueError as e:
                        problem = str(e)
            if problem:
                yield RawRow(record, None, problem, f"line {lines.record_line}", quote(b"".join(lines.record_raw)))
            else:
                yield RawRow(record, row)
            record += 1


def check_headers(files: list[SourceShard]) -> None:
    """The files of one source (a glob) must share a header line: a file whose first line differs
    most likely has none, and reading it as headed would lose its first row."""
    headed = [f for f in files if f.options.header]
    if len(headed) < 2:
        return
    first = _header_cells(headed[0])
    for other in headed[1:]:
        cells = _header_cells(other)
        if cells != first:
            raise source_error(
                other.task, other.split,
                f"{other.location}: its first line {quote(' | '.join(cells))!r} is not the header of {headed[0].location} "
                f"({quote(' | '.join(first))!r}); a file without a header line needs its own --source with header=false,columns=...",
            )


def _header_cells(shard: SourceShard) -> list[str]:
    """The first non-blank record of the file (its header line)."""
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
    with open_text_bytes(shard.location) as f:
        for cells in csv.reader(_Lines(f, shard.options.encoding), **_dialect(shard.kind, shard.options)):
            if cells:
                return cells
    return []


