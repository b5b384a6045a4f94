"""The Beam-free file layer: local paths and URIs (gs://, and a local Cloud Storage emulator)
through pyarrow.fs.

Readers that must run without Apache Beam (the manifest reader, the trainer's data path, the
catalog) reach files here. Beam stages use beam_pipelines/storage.py (Beam's FileSystems), which
takes its notion of a remote path and the emulator variable from this module, so both layers
agree on what is local.
"""
from __future__ import annotations

import os

import pyarrow.fs as pafs

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # a local Cloud Storage emulator, as google-cloud-storage reads it


def is_remote(path: str) -> bool:
    """A URI (gs://, hf://, ...) rather than a local path."""
    return "://" in path


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


def read_bytes(uri: str) -> bytes:
    """A whole file; FileNotFoundError when it is missing (also where pyarrow says so only in words)."""
    fs, path = open_filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as e:  # pyarrow reports a missing GCS object as a generic OSError
        if "not found" in str(e).lower() or "no such file" in str(e).lower():
            raise FileNotFoundError(uri) from e
        raise
