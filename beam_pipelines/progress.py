"""A progress line on stderr while a local build runs: the Beam stage executing, bundles done, time elapsed.

What can honestly be shown: Beam's in-process runner (the DirectRunner's FnApiRunner, also in
multi-process mode, where it schedules from this process) runs fused stages one bundle at a time
and logs each bundle it starts at DEBUG. Row counts are not available until the run ends (Beam
metrics are gathered per bundle inside the workers), and the number of bundles is not known up
front, so the display is a count without a total: the top-level transform of the stage now
running (Read, Render, Deduplicate, ...), bundles started so far, and elapsed time, refreshed
twice a second even when a bundle takes long.

The hook is a filter on Beam's bundle logger that observes records and passes on only those the
logger would have emitted anyway, so turning the display on never adds log output; the display
writes only to stderr, so the build's files and stdout are the same with it on or off.
"""
from __future__ import annotations

import contextlib
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


class _BundleWatcher(logging.Filter):
    """Moves the bar on every bundle Beam starts; lets a record through only if the logger's own level would."""

    def __init__(self, bar: tqdm, passthrough_level: int):
        super().__init__()
        self._bar = bar
        self._level = passthrough_level

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(BUNDLE_MESSAGE) and record.args:
            self._bar.set_description_str(top_level_stage(str(record.args[0])), refresh=False)
            self._bar.update()
        return record.levelno >= self._level


def _refresh_until(stop: threading.Event, bar: tqdm) -> None:
    """Keep elapsed time moving while one long bundle runs."""
    while not stop.wait(REFRESH_SECONDS):
        bar.refresh()


@contextlib.contextmanager
def progress_display(stream: TextIO) -> Iterator[None]:
    """Show the progress line on `stream` while the body runs a local pipeline; it is removed at the end."""
    logger = logging.getLogger(BUNDLE_LOGGER)
    bar = tqdm(desc="Starting", file=stream, leave=False, bar_format="{desc}: {n} bundles started, {elapsed} elapsed")
    watcher = _BundleWatcher(bar, logger.getEffectiveLevel())
    previous_level = logger.level
    stop = threading.Event()
    refresher = threading.Thread(target=_refresh_until, args=(stop, bar), daemon=True)
    logger.addFilter(watcher)
    logger.setLevel(logging.DEBUG)
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        logger.setLevel(previous_level)
        logger.removeFilter(watcher)
        bar.close()
