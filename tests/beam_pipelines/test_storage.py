"""The file layer against a real (emulated) Cloud Storage API: writes (storage.py), listing and
seekable reads (schemas/files.py), and the up-front bucket check."""
from __future__ import annotations

import pytest

from flanforge.beam_pipelines.storage import check_output_location, write_bytes
from flanforge.schemas.files import StorageError, match_files, open_input
from flanforge.schemas.files import read_bytes


def test_write_match_and_seek_on_gcs(gcs_emulator):
    bucket = gcs_emulator.new_bucket()
    write_bytes(f"gs://{bucket}/in/b.jsonl", b'{"x": 2}\n')
    digest = write_bytes(f"gs://{bucket}/in/a.jsonl", b'{"x": 1}\n{"x": 10}\n')
    assert len(digest) == 64
    found = match_files(f"gs://{bucket}/in/*.jsonl")
    assert [(f.path, f.size) for f in found] == [(f"gs://{bucket}/in/a.jsonl", 19), (f"gs://{bucket}/in/b.jsonl", 9)]
    with open_input(f"gs://{bucket}/in/a.jsonl") as f:
        f.seek(9)
        assert f.readline() == b'{"x": 10}\n'
    # The pyarrow side (used by manifest readers and the trainer) reaches the same objects.
    assert read_bytes(f"gs://{bucket}/in/b.jsonl") == b'{"x": 2}\n'


def test_match_nothing_is_empty_not_an_error(gcs_emulator, tmp_path):
    bucket = gcs_emulator.new_bucket()
    assert match_files(f"gs://{bucket}/nothing/*.jsonl") == []
    assert match_files(str(tmp_path / "missing.jsonl")) == []


def test_missing_bucket_is_one_clear_line(gcs_emulator):
    with pytest.raises(StorageError, match=r"bucket no-such-bucket does not exist; create it with"):
        check_output_location("gs://no-such-bucket/out")
    check_output_location(f"gs://{gcs_emulator.new_bucket()}/out")  # exists: no error
    check_output_location("/tmp/local/out")  # local: nothing to check
