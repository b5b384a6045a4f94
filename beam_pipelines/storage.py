"""Where a build writes: outputs, spill files and the render cache, local or gs://, through
Beam's FileSystems.

Only Beam stages and the launcher's publishing step write, so only they come here; everything
that reads (sources, the cache index, manifests) goes through the Beam-free schemas/files.py.
Two things need care beyond FileSystems itself:

* A local GCS emulator (`STORAGE_EMULATOR_HOST`, e.g. `gcp-storage-emulator`) accepts anonymous
  requests, but Beam first looks for Google credentials and retries for ~27 s per process when
  there are none. `use_emulator_credentials` makes Beam connect anonymously in that case; it is
  called before every FileSystems access, so worker processes get it too.
* A missing bucket or a permission problem should stop a build before any work is launched, with
  one line that says what to fix (`check_output_location`).
"""
from __future__ import annotations

import hashlib
import os
from typing import BinaryIO, Iterable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# One notion of "remote" and one StorageError for both sides of the file layer.
from flanforge.schemas.files import EMULATOR_ENV, StorageError, is_remote


def use_emulator_credentials() -> None:
    """Under STORAGE_EMULATOR_HOST, make Beam's GCS client anonymous instead of hunting for credentials."""
    if not os.environ.get(EMULATOR_ENV):
        return
    from apache_beam.internal.gcp import auth

    # Beam caches "no credentials" per process; setting the cache skips its retrying lookup.
    # (Beam has no public switch for this: --no_auth is not read by its GCS client.)
    with auth._Credentials._credentials_lock:
        if not auth._Credentials._credentials_init:
            auth._Credentials._credentials = None
            auth._Credentials._credentials_init = True


def gcs_bucket(path: str) -> str | None:
    """The bucket of a gs:// path, else None."""
    if not path.startswith("gs://"):
        return None
    return path[len("gs://"):].split("/", 1)[0]






def exists(path: str) -> bool:
    use_emulator_credentials()
    return FileSystems.exists(path)


def delete(paths: list[str]) -> None:
    """Delete files or (local) directories with everything under them."""
    use_emulator_credentials()
    if paths:
        FileSystems.delete(paths)


def delete_tree(path: str) -> None:
    """Delete everything under a directory or object prefix; nothing there is fine.

    GCS has no directories: `exists` is false for a prefix, and only a trailing '/' makes Beam
    delete everything under it."""
    if is_remote(path):
        delete([path.rstrip("/") + "/"])
    elif exists(path):
        delete([path])


def move(source: str, destination: str) -> None:
    """Move one file (a rename on local disk; copy then delete on Cloud Storage, which has no rename)."""
    use_emulator_credentials()
    if not is_remote(destination):
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        os.replace(source, destination)
        return
    FileSystems.rename([source], [destination])


def open_write(path: str) -> BinaryIO:
    """A binary writer (local dirs are created; a GCS object appears whole when the writer closes)."""
    use_emulator_credentials()
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_bytes(path: str, data: bytes) -> str:
    """Write a whole file in one go and return its sha256."""
    return write_chunks(path, [data])[1]


def write_chunks(path: str, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write a file from pieces as they are produced; (size, sha256) of what was written."""
    digest = hashlib.sha256()
    size = 0
    with open_write(path) as f:
        for chunk in chunks:
            f.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """What the storage clients raise when the service cannot be reached (not: refused us)."""
    import requests
    from google.api_core import exceptions
    from google.auth.exceptions import TransportError

    return requests.exceptions.ConnectionError, requests.exceptions.Timeout, TransportError, exceptions.ServiceUnavailable, exceptions.RetryError


UNREACHABLE = _unreachable_errors()


def unreachable(e: BaseException) -> str:
    """One line for a storage outage, with what to do."""
    where = os.environ.get(EMULATOR_ENV) or "storage.googleapis.com"
    return f"cannot reach Cloud Storage at {where} ({type(e).__name__}); check the network (or {EMULATOR_ENV}) and retry"


def check_output_location(path: str) -> None:
    """Fail up front, in one line, when a gs:// output's bucket is missing or not ours to write."""
    bucket = gcs_bucket(path)
    if bucket is None:
        return
    from google.api_core import exceptions
    from google.cloud import storage

    client = storage.Client.create_anonymous_client() if os.environ.get(EMULATOR_ENV) else storage.Client()
    try:
        found = client.lookup_bucket(bucket, retry=None, timeout=30)
    except UNREACHABLE as e:
        raise StorageError(f"--output {path}: {unreachable(e)}") from None
    except exceptions.Forbidden:
        raise StorageError(
            f"--output {path}: no permission to use bucket {bucket}; grant your account (or the Dataflow "
            f"service account) roles/storage.objectAdmin on it"
        ) from None
    if found is None:
        raise StorageError(f"--output {path}: bucket {bucket} does not exist; create it with `gcloud storage buckets create gs://{bucket}`")
