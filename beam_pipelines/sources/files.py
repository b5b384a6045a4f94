"""Files behind a source: expanding a path or glob, and opening a file's bytes.

Every file is listed and opened through the Beam-free file layer (schemas/files.py), so any path
or glob may be local or gs://; hf:// paths (a hub dataset's Parquet files) go through
huggingface_hub. A `.gz` name is decompressed for the text formats.
"""
from __future__ import annotations

import gzip
import os
from typing import BinaryIO

from flanforge.beam_pipelines.sources.base import source_error
from flanforge.schemas.files import FileInfo, StorageError, has_glob, is_remote, match_files, open_input


def glob_root(pattern: str) -> str:
    """The directory part of a pattern before its first wildcard."""
    head = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    return head if head.endswith("/") else os.path.dirname(head)


def relative_to(path: str, root: str) -> str:
    """path below root, '/'-separated: the part of a source's name that is the same on every machine."""
    if not root:
        return path
    if is_remote(path):
        return path[len(root):].lstrip("/") if path.startswith(root) else path
    return os.path.relpath(path, root).replace(os.sep, "/")


def expand_files(task: str, split: str, pattern: str) -> list[tuple[FileInfo, str]]:
    """(file, path relative to the glob root) for every file a path or glob names, sorted."""
    try:
        files = match_files(pattern)
    except StorageError as e:
        raise source_error(task, split, f"source {pattern!r} cannot be listed: {e}") from None
    if not files:
        raise source_error(task, split, f"source {pattern!r} matched no files")
    if all(f.size == 0 for f in files):
        raise source_error(task, split, f"source {pattern!r} is empty ({len(files)} file(s) of 0 bytes)")
    root = glob_root(pattern) if has_glob(pattern) else os.path.dirname(pattern)
    return [(f, relative_to(f.path, root)) for f in files]


def open_source(path: str) -> BinaryIO:
    """A seekable binary reader for a local path, a gs:// URI or a Hugging Face hub URL (hf://)."""
    if path.startswith("hf://"):
        from huggingface_hub import HfFileSystem

        return HfFileSystem().open(path, "rb")
    return open_input(path)


def open_text_bytes(path: str) -> BinaryIO:
    """The bytes of a JSONL/CSV/TSV/line file, gunzipped when its name ends in .gz."""
    raw = open_source(path)
    return gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw


def starts_with(path: str, prefix: bytes) -> bool:
    with open_text_bytes(path) as f:
        return f.read(64).lstrip().startswith(prefix)
