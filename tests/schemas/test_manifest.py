import json

import pytest

from flanforge.schemas.manifest import (
    COUNTERS,
    ManifestError,
    ShardInfo,
    TaskEntry,
    accounting_errors,
    read_manifest,
    verify_shards,
)


def test_missing_manifest_says_how_to_fix(tmp_path):
    with pytest.raises(ManifestError, match="not a finished flanforge build .*flanforge build --output"):
        read_manifest(str(tmp_path))


def test_foreign_or_broken_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ManifestError, match="not a flanforge manifest"):
        read_manifest(str(tmp_path))


def test_accounting_errors_name_the_task():
    counts = {c: 0 for c in COUNTERS} | {"template_applications": 10, "written": 7, "duplicates": 2}
    assert accounting_errors({"a": TaskEntry("c", 1, counts)}) == ["a: template_applications=10 but written+duplicates+near_duplicates+contaminated+capped+failed+skipped=9"]
    assert accounting_errors({"a": TaskEntry("c", 1, counts | {"failed": 1})}) == []


def test_verify_shards_detects_missing_and_changed_files(tmp_path):
    from flanforge.schemas.manifest import Manifest

    (tmp_path / "a.parquet").write_bytes(b"abc")
    shard = ShardInfo("a.parquet", "parquet", "train", "c", 1, 3, "0" * 64)
    m = Manifest(str(tmp_path), {}, {}, (shard,), (), "0")
    verify_shards(m, [shard])
    with pytest.raises(ManifestError, match="does not match its sha256"):
        verify_shards(m, [shard], check_sha256=True)
    with pytest.raises(ManifestError, match="missing"):
        verify_shards(m, [ShardInfo("b.parquet", "parquet", "train", "c", 1, 3, "")])
