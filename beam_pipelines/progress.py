"""The progress line on stderr while a local build runs: rows read and records rendered, their
rate, how much of the input is done and an ETA, and the Beam stage running.

Rows: each render worker (in this process, or the DirectRunner's worker processes on this
machine) drops a small JSON file per finished read shard into a local progress folder
(`report_shard`): its input bytes, rows read and records rendered. The display sums them twice a
second. The plan knows every read shard's size, so bytes done / bytes planned is an honest
fraction, and tqdm turns it into a rate and an ETA. (Beam's metrics reach the launcher only when
the run ends, so they cannot drive a live display.)

Stage: Beam's in-process runner logs each bundle it starts at DEBUG; a filter on that logger
names the top-level transform now running (Render, Deduplicate, WriteShards, ...). It passes on
only the records the logger would have emitted anyway, so the display never adds log output, and
it writes only to stderr, so the build's files and stdout are the same with it on or off.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from typing import Iterator, Mapping, TextIO

from apache_beam.options.pipeline_options import PipelineOptions
from tqdm import tqdm

BUNDLE_LOGGER = "apache_beam.runners.portability.fn_api_runner.fn_runner.run_bundle"
BUNDLE_MESSAGE = "Running bundle for stage"
REFRESH_SECONDS = 0.5


class ProgressOptions(PipelineOptions):
    """`--no-progress`, declared the Beam way so `flanforge build --help` lists it with the rest."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--no-progress", "--no_progress", dest="no_progress", action="store_true",
            help="no progress line on stderr (it is also off when stderr is not a terminal or CI is set)",
        )


def progress_wanted(no_progress: bool, stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """On only for a person watching: a terminal, outside CI, not switched off."""
    return not no_progress and not environ.get("CI") and stream.isatty()


def top_level_stage(fused_stage: str) -> str:
    """The top-level transform a fused Beam stage starts with: the stage the data is in.

    Fused names look like `((Deduplicate/GroupCopies/Read)+(ref_AppliedPTransform_Deduplicate-KeepOne_43))+...`;
    PCollection reads/writes (`ref_PCollection_...`) are plumbing and are skipped."""
    for part in re.findall(r"\(([^()]+)\)", fused_stage) or [fused_stage]:
        name = part.removeprefix("ref_AppliedPTransform_")
        if not name.startswith("ref_PCollection"):
            return re.split(r"[/-]", name, maxsplit=1)[0]
    return "Beam"


def report_shard(progress_dir: str, name: str, input_bytes: int, rows: int, records: int) -> None:
    """Record what one read shard did (written whole, then renamed: the display never sees half a file)."""
    path = os.path.join(progress_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"bytes": input_bytes, "rows": rows, "records": records}, f)
    os.replace(path + ".tmp", path)


def progress_totals(progress_dir: str) -> dict[str, int]:
    """Sums over the read shards finished so far: bytes, rows, records, shards."""
    totals = {"bytes": 0, "rows": 0, "records": 0, "shards": 0}
    for entry in os.scandir(progress_dir):
        if entry.name.endswith(".json"):
            try:
                with open(entry.path) as f:
                    done = json.load(f)
            except (OSError, ValueError):
                continue
            for key in ("bytes", "rows", "records"):
                totals[key] += int(done.get(key, 0))
            totals["shards"] += 1
    return totals


class _StageWatcher(logging.Filter):
    """Names the stage Beam runs on every bundle it starts; lets a record through only if the logger's own level would."""

    def __init__(self, passthrough_level: int):
        super().__init__()
        self._level = passthrough_level
        self.stage = "Starting"

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(BUNDLE_MESSAGE) and record.args:
            self.stage = top_level_stage(str(record.args[0]))
        return record.levelno >= self._level


def _show(bar: tqdm, watcher: _StageWatcher, progress_dir: str | None) -> None:
    """Move the bar to what the workers reported so far."""
    description = watcher.stage
    if progress_dir:
        totals = progress_totals(progress_dir)
        bar.update(totals["bytes"] - bar.n)
        description += f": {totals['rows']:,} rows read, {totals['records']:,} records rendered"
    bar.set_description_str(description, refresh=False)
    bar.refresh()


def _refresh_until(stop: threading.Event, bar: tqdm, watcher: _StageWatcher, progress_dir: str | None) -> None:
    """Keep the line current, and the time moving while a shard runs long."""
    while not stop.wait(REFRESH_SECONDS):
        _show(bar, watcher, progress_dir)


@contextlib.contextmanager
def progress_display(stream: TextIO, progress_dir: str | None = None, input_bytes: int = 0) -> Iterator[None]:
    """Show the progress line on `stream` while the body runs a local pipeline; it is removed at the end.

    `progress_dir` is where the render workers report (None: the stage and time only);
    `input_bytes` the planned input size, for the fraction done and the ETA."""
    logger = logging.getLogger(BUNDLE_LOGGER)
    bar = tqdm(
        desc="Starting", file=stream, leave=False, total=input_bytes or None, unit="B", unit_scale=True,
        bar_format="{desc} | {percentage:3.0f}% of the input read, {rate_fmt} | {elapsed} elapsed, ETA {remaining}"
        if input_bytes else "{desc} | {elapsed} elapsed",
    )
    watcher = _StageWatcher(logger.getEffectiveLevel())
    previous_level = logger.level
    stop = threading.Event()
    refresher = threading.Thread(target=_refresh_until, args=(stop, bar, watcher, progress_dir), daemon=True)
    logger.addFilter(watcher)
    logger.setLevel(logging.DEBUG)
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        _show(bar, watcher, progress_dir)  # the last state, however short the run
        logger.setLevel(previous_level)
        logger.removeFilter(watcher)
        bar.close()
