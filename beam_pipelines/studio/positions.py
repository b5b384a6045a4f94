"""Where in a template a syntax error is: the column Jinja does not report.

Jinja's TemplateSyntaxError carries a line but no column. An editor that underlines the error
needs one, so after the sandbox has refused a template (render.CompiledTemplate, the build's own
compile) this module replays Jinja's lexer and parser over the same source with each token's
offset recorded, and reads the offset of the token the parser stopped at. The replay only locates:
its column is used when it fails with the same message on the same line, and otherwise (an error
only the sandbox's own limits raise, say) the finding keeps its line alone.
"""
from __future__ import annotations

import re
from typing import Iterator

import jinja2
from jinja2.lexer import Token, TokenStream
from jinja2.parser import Parser

_LEXER_OFFSET = re.compile(r" at (\d+)$")  # the lexer's own errors end with the character offset
_QUOTED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")


def line_and_column(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    offset = max(0, min(offset, len(source)))
    line_start = source.rfind("\n", 0, offset) + 1
    return source.count("\n", 0, offset) + 1, offset - line_start + 1


class _PositionedTokens:
    """The parser's tokens, each remembered with the offset of the source text it came from."""

    def __init__(self, env: jinja2.Environment, source: str):
        self._env = env
        self._source = source
        self.offsets: dict[int, int] = {}  # id(Token) -> offset
        self.lexer_stopped_at: int | None = None  # where the lexer was when it raised

    def __iter__(self) -> Iterator[Token]:
        pos = 0
        lexer = self._env.lexer
        try:
            for lineno, kind, value in lexer.tokeniter(self._source, None):
                at = self._source.find(value, pos) if value else pos
                if at < 0:  # a value the lexer rewrote (stripped whitespace): stay where we were
                    at = pos
                pos = at + len(value)
                for token in lexer.wrap(iter([(lineno, kind, value)])):
                    self.offsets[id(token)] = at
                    yield token
        except jinja2.TemplateSyntaxError:
            self.lexer_stopped_at = pos
            raise


def error_column(env: jinja2.Environment, source: str, error: jinja2.TemplateSyntaxError) -> int | None:
    """The 1-based column of `error` in `source`, or None when the replay cannot place it."""
    if not error.lineno:
        return None
    tokens = _PositionedTokens(env, source)
    parser = Parser(env, source)
    parser.stream = TokenStream(iter(tokens), None, None)
    try:
        parser.parse()
    except jinja2.TemplateSyntaxError as replayed:
        if replayed.message != error.message or replayed.lineno != error.lineno:
            return None
        found = _LEXER_OFFSET.search(replayed.message or "")
        if found:
            offset = int(found.group(1))
        elif tokens.lexer_stopped_at is not None:
            offset = tokens.lexer_stopped_at
        elif parser.stream.current.type == "eof":
            offset = len(source)
        elif id(parser.stream.current) in tokens.offsets:
            offset = tokens.offsets[id(parser.stream.current)]
        else:
            return None
        line, column = line_and_column(source, offset)
        return column if line == error.lineno else None
    except Exception:  # the replay is only a locator: whatever else it meets, there is no column
        return None
    return _named_column(source, error)


def _named_column(source: str, error: jinja2.TemplateSyntaxError) -> int | None:
    """An error the compiler raises after parsing (e.g. "No filter named 'shout'.") names what it
    did not know: the column of that name's first use on the error's line."""
    found = _QUOTED_NAME.search(error.message or "")
    if not found:
        return None
    lines = source.split("\n")
    if error.lineno > len(lines):
        return None
    match = re.search(rf"\b{re.escape(found.group(1))}\b", lines[error.lineno - 1])
    return match.start() + 1 if match else None
