"""Copying local test files into the emulated Cloud Storage, through the same storage layer a build uses."""
from __future__ import annotations

from pathlib import Path

from flanforge.beam_pipelines.storage import write_bytes


def upload_tree(local: Path, remote_root: str) -> str:
    """Every file under `local` to `remote_root/<relative path>`; returns remote_root."""
    for path in sorted(local.rglob("*")):
        if path.is_file():
            write_bytes(f"{remote_root}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return remote_root
