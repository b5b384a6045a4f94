"""The Beam-free file layer: reading and listing local paths and URIs (gs://, and a local Cloud
Storage emulator) through pyarrow.fs.

Everything that reads files goes through here: the catalog, source planning and the source
readers (on the launcher and on workers), the render cache index, the manifest reader and the
trainer's data path. None of them needs Apache Beam. Writing a build's outputs is the job of the
Beam stages, through beam_pipelines/storage.py (Beam's FileSystems), which takes its notion of a
remote path and the emulator variable from this module, so both sides agree on what is local.

Local paths use Python's own file objects (the fastest line reader there is); URIs use pyarrow's
filesystems, whose files are seekable, so byte-range reads of a JSON Lines file work the same on
Cloud Storage as on disk.
"""
from __future__ import annotations

import fnmatch
import glob
import io
import os
import posixpath
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow.fs as pafs

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # a local Cloud Storage emulator, as google-cloud-storage reads it


class StorageError(ValueError):
    """A location cannot be used (no such bucket, no permission, storage unreachable)."""


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime: float  # seconds since the epoch, as the filesystem reports it


def is_remote(path: str) -> bool:
    """A URI (gs://, hf://, ...) rather than a local path."""
    return "://" in path


def has_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def join_path(root: str, relative: str) -> str:
    """root + a '/'-separated relative path, in root's own notation."""
    if is_remote(root):
        return posixpath.join(root.rstrip("/"), relative)
    return os.path.join(root, *relative.split("/"))


def first_line(e: BaseException, limit: int = 300) -> str:
    """One short line of an exception, for one-line errors (a corrupt TFRecord's message carries
    the record in hex; a storage outage, a page of HTTP details)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow filesystem + path for a local path or a gs:// (or other pyarrow-known) URI.

    Under STORAGE_EMULATOR_HOST (a local GCS emulator, as in the tests) gs:// goes to the emulator
    anonymously, as google-cloud-storage and Beam do; pyarrow does not read that variable itself.
    """
    emulator = os.environ.get(EMULATOR_ENV)
    if uri.startswith("gs://") and emulator:
        scheme, _, host = emulator.rpartition("://")
        fs = pafs.GcsFileSystem(anonymous=True, scheme=scheme or "http", endpoint_override=host)
        return fs, uri[len("gs://"):]
    if is_remote(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _not_found(e: OSError) -> bool:
    # pyarrow reports a missing GCS object or bucket as a generic OSError, in words
    text = str(e).lower()
    return isinstance(e, FileNotFoundError) or "not found" in text or "no such file" in text or "does not exist" in text


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0] + "://"


def match_files(pattern: str) -> list[FileInfo]:
    """Files a path or glob names, sorted by path; [] when nothing matches.

    Local globs are Python's (`**` spans folders). In URIs, as in Cloud Storage's own listing,
    `*` also matches '/'. A bucket that cannot be listed raises StorageError."""
    if not is_remote(pattern):
        names = glob.glob(pattern, recursive=True) if has_glob(pattern) else [pattern]
        infos = []
        for name in names:
            try:
                st = os.stat(name)
            except OSError:
                continue
            if os.path.isfile(name):
                infos.append(FileInfo(name, st.st_size, st.st_mtime))
        return sorted(infos, key=lambda f: f.path)
    fs, path = open_filesystem(pattern)
    scheme = _scheme(pattern)
    try:
        if not has_glob(path):
            found = [fs.get_file_info(path)]
        else:
            prefix = path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
            base = prefix.rsplit("/", 1)[0] if "/" in prefix else prefix
            listed = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            found = [f for f in listed if fnmatch.fnmatchcase(f.path, path)]
            bucket = path.split("/", 1)[0]
            if not found and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"NotFound: bucket {bucket} does not exist")
    except OSError as e:
        if not has_glob(path) and _not_found(e):
            return []
        raise StorageError(f"cannot list {pattern}: {first_line(e)}") from None
    return sorted(
        (
            FileInfo(scheme + f.path, f.size or 0, f.mtime.timestamp() if f.mtime else 0.0)
            for f in found
            if f.type == pafs.FileType.File
        ),
        key=lambda f: f.path,
    )


def open_input(uri: str) -> BinaryIO:
    """A seekable, buffered binary reader (with readline) for a local path or a URI; never
    decompresses (formats decide that themselves). FileNotFoundError when it is missing."""
    if not is_remote(uri):
        return open(uri, "rb")
    fs, path = open_filesystem(uri)
    try:
        return io.BufferedReader(_RawFile(fs.open_input_file(path)), buffer_size=1 << 20)
    except OSError as e:
        if _not_found(e):
            raise FileNotFoundError(uri) from e
        raise


class _RawFile(io.RawIOBase):
    """A pyarrow random-access file as a raw Python stream, so io.BufferedReader can wrap it
    (pyarrow's files have no buffered readline of their own)."""

    def __init__(self, native: pafs.NativeFile):
        self._native = native

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._native.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._native.seek(offset, whence)

    def tell(self) -> int:
        return self._native.tell()

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()


def read_bytes(uri: str) -> bytes:
    """A whole file; FileNotFoundError when it is missing."""
    with open_input(uri) as f:
        return f.read()
