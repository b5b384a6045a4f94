"""Dead letters: every row or template application that failed, written where a person can read it.

One JSON Lines file per task, `dead_letters/<task>.jsonl`, sorted so reruns are byte-identical.
Each line says the stage (read | render), the split, where (file position or example_id), the
error, and how many template applications the failure cost (so the accounting adds up).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import apache_beam as beam

from flanforge.beam_pipelines.storage import write_bytes
from flanforge.schemas.files import join_path


def dead_letter_path(task: str) -> str:
    return f"dead_letters/{task}.jsonl"


def encode_dead_letters(letters: Iterable[dict[str, Any]]) -> bytes:
    lines = sorted(json.dumps(d, sort_keys=True, ensure_ascii=False) for d in letters)
    return ("\n".join(lines) + "\n").encode("utf-8")


class WriteDeadLetters(beam.PTransform):
    """dead-letter dicts -> one info dict per file written."""

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        output = self._output

        def write(element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
            task, items = element
            items = list(items)
            rel = dead_letter_path(task)
            digest = write_bytes(join_path(output, rel), encode_dead_letters(items))
            yield {"path": rel, "task": task, "rows": len(items), "sha256": digest}

        return letters | "ByTask" >> beam.Map(lambda d: (d["task"], d)) | "Group" >> beam.GroupByKey() | "Write" >> beam.FlatMap(write)
