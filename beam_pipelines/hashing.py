"""Stable hashes: the dedup key of a record, seeded sampling keys, and shard buckets.

Everything that must be identical across runs, runners and worker counts (which copy of a
duplicate wins, which rows a cap keeps, which shard a row lands in) is decided by these
functions, never by `random` or by arrival order. xxHash (XXH3) is used because it is fast and
its output is fixed by specification across platforms and versions.
"""
from __future__ import annotations

import unicodedata

import xxhash

_SEPARATOR = "\x1f"  # ASCII unit separator: cannot be confused with text joined around it


def normalise(text: str) -> str:
    """Text as the dedup sees it: NFKC, case-folded, whitespace runs collapsed, trimmed."""
    # str.split() with no argument splits on runs of Unicode whitespace, like the regex \s+, faster.
    # ASCII text is its own NFKC form, and casefold() of ASCII is lower(): skip the Unicode work.
    if text.isascii():
        return " ".join(text.lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_hash(inputs: str, targets: str) -> str:
    """128-bit hex digest of the normalised (inputs, targets): equal iff the pair is a duplicate."""
    return xxhash.xxh3_128_hexdigest((normalise(inputs) + _SEPARATOR + normalise(targets)).encode())


def seeded_hash(seed: int, *parts: str) -> int:
    """A 64-bit integer that is a fixed function of (seed, parts): the basis of all sampling."""
    return xxhash.xxh3_64_intdigest(_SEPARATOR.join(parts).encode(), seed=seed & 0xFFFFFFFFFFFFFFFF)


def bucket_of(hex_digest: str, buckets: int) -> int:
    """Which of `buckets` equal buckets a content hash falls in (uses its top 64 bits)."""
    return int(hex_digest[:16], 16) % buckets
