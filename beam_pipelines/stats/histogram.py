"""Text length histograms with fixed power-of-two bins.

Fixed bins make a histogram a handful of integers that can be filled one row at a time and
merged across shards and clusters, so the report never holds the texts it measures. Powers of two
suit lengths, which run from a one-word target to a many-thousand-character passage: bin 0 holds
length 0, bin k (k >= 1) holds lengths in [2**(k-1), 2**k).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


def bin_of(length: int) -> int:
    return length.bit_length()


def bin_range(k: int) -> tuple[int, int]:
    """The lengths bin k holds, both ends included."""
    return (0, 0) if k == 0 else (1 << (k - 1), (1 << k) - 1)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=list)  # rows per bin; trailing empty bins are not stored
    total: int = 0  # sum of the lengths, for the mean
    longest: int = 0

    @property
    def rows(self) -> int:
        return sum(self.counts)

    @property
    def mean(self) -> float:
        return self.total / self.rows if self.counts else 0.0

    def add(self, length: int) -> None:
        k = bin_of(length)
        if k >= len(self.counts):
            self.counts.extend([0] * (k + 1 - len(self.counts)))
        self.counts[k] += 1
        self.total += length
        self.longest = max(self.longest, length)

    def merge(self, other: Histogram) -> None:
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for k, n in enumerate(other.counts):
            self.counts[k] += n
        self.total += other.total
        self.longest = max(self.longest, other.longest)


MEASURES: tuple[tuple[str, str], ...] = (
    ("inputs", "chars"),
    ("inputs", "words"),
    ("targets", "chars"),
    ("targets", "words"),
)


def measure(text: str, unit: str) -> int:
    """Characters are code points (Python's len); words are runs of non-whitespace (str.split)."""
    return len(text) if unit == "chars" else len(text.split())


@dataclass
class TextLengths:
    """The four histograms of a set of records: inputs and targets, in characters and in words."""

    histograms: dict[tuple[str, str], Histogram] = field(default_factory=lambda: {m: Histogram() for m in MEASURES})

    @property
    def rows(self) -> int:
        return self.histograms[MEASURES[0]].rows

    def add(self, inputs: Iterable[str], targets: Iterable[str]) -> None:
        for inp, tgt in zip(inputs, targets, strict=True):
            texts = {"inputs": inp, "targets": tgt}
            for field_name, unit in MEASURES:
                self.histograms[field_name, unit].add(measure(texts[field_name], unit))

    def merge(self, other: TextLengths) -> None:
        for m in MEASURES:
            self.histograms[m].merge(other.histograms[m])
