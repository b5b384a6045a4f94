"""One build at a time per output: a lock file (a local file created exclusively, or on Cloud
Storage an object created with a generation precondition) naming who holds it.

Two builds into one output would interleave their files; the second one now stops before doing
anything, naming the first. A lock left by a build that was killed is recognised where it can be
(the same machine, a process that no longer exists) and taken over with a note; elsewhere the
message says how old it is and how to remove it.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from typing import Iterator, TextIO

from flanforge.schemas.files import EMULATOR_ENV, is_remote, join_path, read_bytes

LOCK_NAME = ".flanforge_lock"


class OutputLocked(ValueError):
    """Another build holds this output."""


def _owner(command: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": command[:500]}


def _describe(owner: dict) -> str:
    age = time.time() - float(owner.get("started", time.time()))
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {age / 60:.0f} min ago: `{owner.get('command', '?')}`"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(owner: dict) -> bool:
    """A lock we can prove dead: taken on this machine by a process that is gone."""
    return owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) and not _alive(owner["pid"])


def _read_owner(path: str) -> dict:
    try:
        data = json.loads(read_bytes(path))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _take_local(path: str, owner: dict) -> bool:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(owner, f)
    return True


def _gcs_blob(path: str):
    from google.cloud import storage

    client = storage.Client.create_anonymous_client() if os.environ.get(EMULATOR_ENV) else storage.Client()
    bucket, _, name = path[len("gs://"):].partition("/")
    return client.bucket(bucket).blob(name)


def _take_gcs(path: str, owner: dict) -> bool:
    from google.api_core.exceptions import PreconditionFailed

    try:
        _gcs_blob(path).upload_from_string(json.dumps(owner), if_generation_match=0)  # only if it does not exist
    except PreconditionFailed:
        return False
    return True


def _release(path: str) -> None:
    if is_remote(path):
        with contextlib.suppress(Exception):
            _gcs_blob(path).delete()
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def output_lock(output: str, command: str = " ".join(sys.argv), err: TextIO | None = None) -> Iterator[None]:
    """Hold the output's lock for the duration of the block; OutputLocked if someone else does."""
    path = join_path(output, LOCK_NAME)
    owner = _owner(command)
    take = _take_gcs if path.startswith("gs://") else _take_local
    if not take(path, owner):
        holder = _read_owner(path)
        if _stale(holder):
            print(f"note: a previous build into {output} ({_describe(holder)}) was killed; taking over its lock", file=err or sys.stderr)
            _release(path)
            if not take(path, owner):
                raise OutputLocked(f"--output {output} is being built by another flanforge build ({_describe(_read_owner(path))})")
        else:
            raise OutputLocked(
                f"--output {output} is being built by another flanforge build ({_describe(holder)}); wait for it to finish, "
                f"or, if that build is gone (killed on another machine), delete {path}"
            )
    try:
        yield
    finally:
        _release(path)
