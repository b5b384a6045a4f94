"""What an example *says*, apart from the template that says it: slot text, shingles, MinHash.

Near-duplicate detection and contamination checks compare examples, not renderings. Ten
different rows rendered through one template share the template's words ("Does the passage
above support the claim that ..."), so comparing rendered text would call them similar; the
same row rendered through two templates shares almost nothing. So similarity is computed over
the **filled-in slots**: the rendered text with the template's own literal text cut out (found
with Jinja's lexer, which only tokenises and never runs the template), the options block
removed, and for a task with options the target (a label) left out. What remains is the row's
content as the template quoted it.

The slot text is normalised (NFKC, case-folded, punctuation and whitespace collapsed) and split
into sentences; shingles are word n-grams *within* a sentence, so reordering sentences changes
nothing and a sentence shorter than n words is one shingle. MinHash signatures are computed with
numpy over many examples at once (universal hashing modulo the Mersenne prime 2^61-1, the same
scheme as datasketch, vectorised), and LSH bands are folded into one uint64 each.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import jinja2
import numpy as np
import xxhash

from flanforge.beam_pipelines.render import format_options

_MERSENNE = np.uint64((1 << 61) - 1)
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
SHINGLE_CHUNK = 1 << 13  # shingles hashed per numpy pass: its temporaries are ~3 x SHINGLE_CHUNK x num_perm x 8 bytes (24 MB)


@dataclass(frozen=True)
class NearDedupParams:
    """The near-duplicate settings a build records in its manifest (docs/NEAR_DEDUP.md says why
    these defaults: instruction rows are short, and with 5-gram shingles one edited word changes most of a sentence)."""

    ngram: int = 2
    bands: int = 20
    rows: int = 6  # MinHash values per band; bands x rows permutations in all
    threshold: float = 0.7  # Jaccard similarity of the shingle sets at or above which two examples are near-duplicates
    seed: int = 0x5EED

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


@functools.lru_cache(maxsize=4096)
def literal_segments(source: str) -> tuple[str, ...]:
    """The template's own text, in order: the data tokens of Jinja's lexer, stripped (never rendered)."""
    env = jinja2.Environment()
    try:
        tokens = env.lex(source)
        return tuple(s for s in (value.strip() for _, kind, value in tokens if kind == "data") if s)
    except jinja2.TemplateSyntaxError:
        return ()


def slot_pieces(text: str, segments: Sequence[str]) -> list[str]:
    """`text` with the template's literal segments cut out, left to right (a segment inside an
    if-block that did not render is simply not found): the pieces in between are the slots."""
    pieces: list[str] = []
    at = 0
    for segment in segments:
        found = text.find(segment, at)
        if found < 0:
            continue
        pieces.append(text[at:found])
        at = found + len(segment)
    pieces.append(text[at:])
    return [p.strip() for p in pieces if p.strip()]


def example_pieces(inputs: str, targets: str, options: Sequence[str], inputs_source: str, targets_source: str) -> list[str]:
    """The slot text of one zero-shot record: inputs without the options block, and the target
    unless it is one of the options (a label says nothing about which example this is)."""
    if options:
        inputs = inputs.replace("\n\n" + format_options(options), "")
    pieces = slot_pieces(inputs, literal_segments(inputs_source))
    if not options:
        pieces += slot_pieces(targets, literal_segments(targets_source))
    return pieces


def words(text: str) -> list[str]:
    """Normalised words: NFKC (skipped for ASCII, where it changes nothing), case-folded, no punctuation."""
    return _WORD.findall((text if text.isascii() else unicodedata.normalize("NFKC", text)).casefold())


def piece_words(pieces: Iterable[str]) -> list[list[str]]:
    return [words(p) for p in pieces]


def sentences(pieces: Iterable[str]) -> list[list[str]]:
    """Normalised word lists, one per sentence of every piece."""
    return [w for piece in pieces for w in (words(s) for s in _SENTENCE_END.split(piece)) if w]


def shingles(pieces: Iterable[str], n: int) -> np.ndarray:
    """The sorted, distinct 32-bit hashes of the word n-grams within each sentence."""
    found: set[int] = set()
    for words in sentences(pieces):
        if len(words) <= n:
            found.add(xxhash.xxh32_intdigest(" ".join(words).encode()))
        else:
            found.update(xxhash.xxh32_intdigest(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1))
    return np.array(sorted(found), dtype=np.uint32)


def ngrams(pieces: list[list[str]], n: int) -> np.ndarray:
    """The distinct 64-bit hashes of the word n-grams of each piece's words (`piece_words`;
    contamination: a piece shorter than n words has none, `exact_hash` catches it instead)."""
    found = {xxhash.xxh3_64_intdigest(" ".join(w[i : i + n]).encode()) for w in pieces for i in range(len(w) - n + 1)}
    return np.array(sorted(found), dtype=np.uint64)


NO_TEXT = 0  # the exact hash of an example with no words: matches nothing


def exact_hash(pieces: list[list[str]]) -> int:
    """One hash of the normalised slot text (`piece_words`): equal for examples that say the same
    thing, whatever the case, punctuation, whitespace or template (NO_TEXT when nothing is left)."""
    text = "\x1f".join(" ".join(w) for w in pieces if w)
    return xxhash.xxh3_64_intdigest(text.encode()) or 1 if text else NO_TEXT


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted distinct shingle arrays (1.0 for two empty ones)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


class MinHasher:
    """MinHash signatures of many shingle sets in one numpy pass: h_i(x) = (a_i * x + b_i) mod
    (2^61 - 1), truncated to 32 bits, with a_i, b_i < 2^32 so a_i * x cannot overflow uint64."""

    def __init__(self, num_perm: int, seed: int):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)

    def signatures(self, sets: Sequence[np.ndarray]) -> np.ndarray:
        """(len(sets), num_perm) uint32; an empty set gets all 0xFFFFFFFF (and is never a candidate)."""
        out = np.full((len(sets), len(self.a)), 0xFFFFFFFF, dtype=np.uint32)
        start = 0
        while start < len(sets):
            stop, size = start, 0
            while stop < len(sets) and (size == 0 or size + len(sets[stop]) <= SHINGLE_CHUNK):
                size += len(sets[stop])
                stop += 1
            chunk = [s for s in sets[start:stop]]
            lengths = np.array([len(s) for s in chunk])
            if lengths.sum():
                x = np.concatenate(chunk).astype(np.uint64)
                values = ((x[:, None] * self.a[None, :] + self.b[None, :]) % _MERSENNE) & np.uint64(0xFFFFFFFF)
                filled = np.flatnonzero(lengths)
                offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])[filled]
                out[start + filled] = np.minimum.reduceat(values, offsets, axis=0).astype(np.uint32)
            start = stop
        return out


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: each band's `rows` MinHash values folded into one number (multiply-add with
    wrap-around; a rare false collision only costs a verification)."""
    n = len(signatures)
    sig = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    acc = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            acc = acc * np.uint64(0x9E3779B97F4A7C15) + sig[:, :, r] + np.uint64(r + 1)
    return acc
