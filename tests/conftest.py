"""Shared fixtures: a small templates directory the tests own (so they don't depend on the size of
the bundled catalog) and a helper that runs a real build in-process."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from flanforge.templates import TEMPLATES_DIR

from specs import GENERATIVE_SPEC



@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    """clusters.yaml, recipes/, nli/rte.yaml (bundled) + summarization/echo_title.yaml (generative)."""
    root = tmp_path / "templates"
    (root / "nli").mkdir(parents=True)
    (root / "summarization").mkdir()
    shutil.copy(TEMPLATES_DIR / "clusters.yaml", root / "clusters.yaml")
    shutil.copytree(TEMPLATES_DIR / "recipes", root / "recipes")
    shutil.copy(TEMPLATES_DIR / "nli" / "rte.yaml", root / "nli" / "rte.yaml")
    (root / "summarization" / "echo_title.yaml").write_text(GENERATIVE_SPEC)
    return root


class GcsEmulator:
    """A real Cloud Storage API (gcp-storage-emulator, in memory) on a local port."""

    def __init__(self, host: str):
        self.host = host
        self._created = 0

    def new_bucket(self) -> str:
        """A fresh, empty bucket name (one per test, so tests don't see each other's objects)."""
        from google.cloud import storage

        self._created += 1
        name = f"test-bucket-{self._created}"
        storage.Client.create_anonymous_client().create_bucket(name)
        return name


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """Start the emulator once per session and point every client (Beam, google-cloud-storage,
    pyarrow via flanforge) at it through STORAGE_EMULATOR_HOST, as a developer would locally."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the GCS emulator did not start")
            time.sleep(0.1)
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield GcsEmulator(os.environ["STORAGE_EMULATOR_HOST"])
    finally:
        if previous is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        proc.terminate()
        proc.wait(timeout=10)
