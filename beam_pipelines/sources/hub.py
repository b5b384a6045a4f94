"""Hugging Face `datasets` sources: hub (or builder) datasets, and local save_to_disk directories.

A hub split whose data files are all Parquet is planned one shard per row group from the
repository listing and the files' footers (read by `parquet.py`), without loading the split;
other hub datasets and save_to_disk directories are cut into row ranges and read through
`datasets` on the worker. Ids number rows in the split's own order, as `load_dataset` does.
"""
from __future__ import annotations

import functools
import os
import socket
import urllib.parse
from dataclasses import replace
from typing import Any, Iterator

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.sources import parquet
from flanforge.beam_pipelines.sources.base import ROWS_PER_SHARD, RawRow, SourceError, SourceShard, source_error
from flanforge.schemas.files import first_line, is_remote


def _row_ranges(n_rows: int, per_shard: int) -> list[tuple[int, int]]:
    n = max(1, -(-n_rows // per_shard))
    return [(i * n_rows // n, (i + 1) * n_rows // n) for i in range(n)]


def _row_range_shards(whole: SourceShard, ds: Any) -> list[SourceShard]:
    if len(ds) == 0:
        raise source_error(whole.task, whole.split, f"source {whole.location!r} has no rows")
    return [replace(whole, start=a, end=b) for a, b in _row_ranges(len(ds), ROWS_PER_SHARD)]


def _load_from_disk(path: str, split: str):
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise SourceError(f"{path}: saved DatasetDict has splits {list(ds)}, not {split!r}")
        ds = ds[split]
    return ds


def plan_disk_directory(spec: TaskSpec, split: str, directory: str, source_split: str) -> list[SourceShard]:
    """Row-range shards of a local save_to_disk directory; the source split travels on the shard."""
    if is_remote(directory):
        raise source_error(
            spec.name, split,
            f"{directory}: save_to_disk directories are read from local disk only; copy it locally, "
            f"or export it with Dataset.to_parquet() and point the task at the .parquet files",
        )
    whole = SourceShard(
        task=spec.name, split=split, kind="hf_disk", location=directory, start=0, end=-1, id_field=spec.source.id_field,
        id_prefix=os.path.basename(directory.rstrip(os.sep)), hf_split=source_split,
    )
    try:
        ds = _load_from_disk(directory, source_split)
    except SourceError as e:
        raise source_error(spec.name, split, str(e)) from None
    except Exception as e:  # datasets raises many types; all mean "not a readable save_to_disk directory"
        raise source_error(spec.name, split, f"cannot load save_to_disk directory {directory}: {type(e).__name__}: {first_line(e)}") from None
    return _row_range_shards(whole, ds)


def plan_disk(spec: TaskSpec, split: str) -> list[SourceShard]:
    return plan_disk_directory(spec, split, spec.source.path or "", spec.source.splits[split])


def _hub_args(shard: SourceShard) -> dict[str, Any]:
    return dict(path=shard.location, name=shard.hf_name, data_files=shard.data_files, revision=shard.hf_revision, data_dir=shard.hf_data_dir)


def _load_hub(shard: SourceShard):
    import datasets

    return datasets.load_dataset(**_hub_args(shard), split=shard.hf_split)


def _parquet_files(shard: SourceShard) -> list[str] | None:
    """The split's data files when they are all Parquet (hf:// URLs or local paths), else None.

    Resolving data files reads only the repository listing, not the data."""
    import datasets

    builder = datasets.load_dataset_builder(**_hub_args(shard))
    files = [str(f) for f in (builder.config.data_files or {}).get(shard.hf_split, [])]
    return files if files and all(f.endswith(".parquet") for f in files) else None


def _plan_parquet_files(whole: SourceShard, files: list[str]) -> list[SourceShard]:
    """Row-group shards numbered across the split's files in order, so ids equal load_dataset's row numbers."""
    shards: list[SourceShard] = []
    first_row = 0
    for path in files:
        counts = parquet.row_counts(path)
        shards += parquet.row_group_shards(replace(whole, location=path), counts, first_row)
        first_row += sum(counts)
    if not shards:
        raise source_error(whole.task, whole.split, f"source {whole.location!r} has no rows")
    return shards


# How long to wait for the hub's host to answer before calling the machine offline. Without this,
# huggingface_hub retries for ~30 s per dataset before saying anything.
HUB_PROBE_SECONDS = 3.0
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _is_hub_id(path: str) -> bool:
    """A hub repository id (`owner/name`), not a local folder or a packaged builder (json, csv, ...)."""
    return "/" in path and not os.path.exists(path) and not is_remote(path)


@functools.lru_cache(maxsize=None)
def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached from here (one short probe per process), or None."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in _OFFLINE_VARIABLES):
        return None  # offline mode on purpose: datasets reads its local cache, and says so if it cannot
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as e:
        return f"the Hugging Face hub ({url.hostname}:{port}) cannot be reached ({type(e).__name__})"
    return None


def plan_hub(spec: TaskSpec, split: str) -> list[SourceShard]:
    src = spec.source
    hf_split = src.splits[split]
    offline = _hub_unreachable() if _is_hub_id(src.path or "") else None
    if offline:
        raise source_error(
            spec.name, split,
            f"{offline}: point the task at local files with --source {spec.name}:{split}=PATH, build from the spec's "
            f"samples with --demo, or set HF_HUB_OFFLINE=1 to read datasets already in the local Hugging Face cache",
        )
    whole = SourceShard(
        task=spec.name, split=split, kind="hf", location=src.path or "", start=0, end=-1, id_field=src.id_field, id_prefix=hf_split,
        hf_name=src.name, hf_split=hf_split, data_files=src.data_files, hf_revision=src.revision, hf_data_dir=src.data_dir,
    )
    try:
        files = _parquet_files(whole)
        return _plan_parquet_files(whole, files) if files else _row_range_shards(whole, _load_hub(whole))
    except SourceError:
        raise
    except Exception as e:  # datasets/huggingface_hub/pyarrow raise many types; all mean "cannot read this source"
        raise source_error(
            spec.name, split,
            f"cannot load HF dataset {src.path!r} (config {src.name!r}, split {hf_split!r}): {type(e).__name__}: {first_line(e)}. "
            f"Offline? Point the task at local files with --source {spec.name}:{split}=PATH",
        ) from None


def read(shard: SourceShard) -> Iterator[RawRow]:
    ds = _load_hub(shard) if shard.kind == "hf" else _load_from_disk(shard.location, shard.hf_split)
    for i, row in enumerate(ds.select(range(shard.start, shard.end)), start=shard.start):
        yield RawRow(i, row, "", f"row {i}")
