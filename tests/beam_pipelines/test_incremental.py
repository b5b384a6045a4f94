"""Incremental rebuilds: unchanged tasks are replayed from the render cache, changed ones are
re-rendered, and the published output is the same as a clean build's (cross-task dedup included)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import yaml

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.incremental import CACHE_DIR, INDEX_NAME
from flanforge.schemas.manifest import read_manifest


def build(*args: str) -> None:
    out = io.StringIO()
    assert run_build_cli(list(args), out) == 0, out.getvalue()


def rows(path: Path, n: int) -> None:
    lines = [json.dumps({"premise": f"Premise {i % 20} here.", "hypothesis": f"Claim {i % 5}.", "label": i % 2, "idx": i}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def twin_tasks(tmp_path: Path, templates_dir: Path) -> tuple[Path, list[str]]:
    """rte plus rte_twin (same spec, other name): their renders collide, so dedup works across tasks."""
    spec = yaml.safe_load((templates_dir / "nli" / "rte.yaml").read_text())
    spec["name"] = "rte_twin"
    (templates_dir / "nli" / "rte_twin.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    data = tmp_path / "rte.jsonl"
    rows(data, 60)
    flags = ["--templates", str(templates_dir), "--source", f"rte={data}", "--source", f"rte_twin={data}", "--max-examples-per-task", "300"]
    return data, flags


def published(out: Path) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, str]]:
    """(shard path -> sha256, task -> counts, dead-letter path -> sha256): what a reader sees."""
    m = read_manifest(str(out))
    return (
        {s.path: s.sha256 for s in m.shards},
        {name: t.counts for name, t in m.tasks.items()},
        {d.path: d.sha256 for d in m.dead_letters},
    )


def edit_template(templates_dir: Path, task: str, text: str) -> None:
    path = templates_dir / "nli" / f"{task}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["templates"][0]["inputs"] = text
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_only_the_changed_task_is_rendered_and_output_equals_a_clean_build(tmp_path, templates_dir, twin_tasks):
    data, flags = twin_tasks
    out = tmp_path / "out"
    build("--output", str(out), *flags)
    first = read_manifest(str(out))
    assert not any(t.from_cache for t in first.tasks.values())
    # rte_twin loses every tie to rte, rte only to itself (rows repeat every 20).
    assert first.tasks["rte_twin"].counts["written"] == 0 < first.tasks["rte"].counts["duplicates"]

    edit_template(templates_dir, "rte_twin", "{{ premise }}\nDoes it follow that {{ hypothesis }}?")
    # rte's source now holds garbage of the same size and mtime: reading it again would change the output.
    stat = data.stat()
    original = data.read_bytes()
    data.write_bytes(b"x" * len(original))
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    twin_source = tmp_path / "twin.jsonl"
    twin_source.write_bytes(original)
    flags = [f"rte_twin={twin_source}" if f.startswith("rte_twin=") else f for f in flags]

    build("--output", str(out), *flags)
    second = read_manifest(str(out))
    assert second.tasks["rte"].from_cache and not second.tasks["rte_twin"].from_cache
    assert second.tasks["rte"].fingerprint == first.tasks["rte"].fingerprint
    assert second.tasks["rte_twin"].fingerprint != first.tasks["rte_twin"].fingerprint

    # A clean build of the same inputs (rte's real rows restored) publishes exactly the same files.
    data.write_bytes(original)
    clean = tmp_path / "clean"
    build("--output", str(clean), *flags, "--no-incremental")
    assert published(out) == published(clean)
    assert published(out)[0] != {s.path: s.sha256 for s in first.shards}  # the edit did change the output
    assert not (clean / CACHE_DIR).exists()


def test_changed_source_unfinished_entry_and_no_incremental_all_rerender(tmp_path, templates_dir, twin_tasks):
    data, flags = twin_tasks
    out = tmp_path / "out"
    build("--output", str(out), *flags)
    fingerprint = read_manifest(str(out)).tasks["rte_twin"].fingerprint

    rows(data, 70)  # both tasks read this file
    build("--output", str(out), *flags)
    m = read_manifest(str(out))
    assert not any(t.from_cache for t in m.tasks.values()) and m.tasks["rte"].counts["read"] == 70
    # The superseded entry is gone; only the current fingerprint's entry remains.
    assert [p.name for p in (out / CACHE_DIR / "rte_twin").iterdir()] == [m.tasks["rte_twin"].fingerprint]
    assert fingerprint != m.tasks["rte_twin"].fingerprint

    (out / CACHE_DIR / "rte" / m.tasks["rte"].fingerprint / INDEX_NAME).unlink()  # as if that build died
    build("--output", str(out), *flags)
    m = read_manifest(str(out))
    assert not m.tasks["rte"].from_cache and m.tasks["rte_twin"].from_cache

    build("--output", str(out), *flags, "--no-incremental")
    assert not any(t.from_cache for t in read_manifest(str(out)).tasks.values())
    assert not any((out / CACHE_DIR).rglob("*.*"))  # no cache kept either


def test_render_settings_and_caps_are_part_of_the_fingerprint_formats_are_not(tmp_path, templates_dir, twin_tasks):
    _, flags = twin_tasks
    out = tmp_path / "out"
    build("--output", str(out), *flags)
    build("--output", str(out), *flags, "--seed", "7")
    assert not any(t.from_cache for t in read_manifest(str(out)).tasks.values())
    # A capped split renders only its candidates, so the cap changes what is cached.
    build("--output", str(out), *flags, "--seed", "7", "--max-examples-per-task", "100")
    m = read_manifest(str(out))
    assert not any(t.from_cache for t in m.tasks.values()) and m.tasks["rte"].counts["capped"] > 0
    build("--output", str(out), *flags, "--seed", "7", "--max-examples-per-task", "100", "--formats", "parquet")
    reused = read_manifest(str(out))
    assert all(t.from_cache for t in reused.tasks.values())
    assert {n: t.counts for n, t in reused.tasks.items()} == {n: t.counts for n, t in m.tasks.items()}


@pytest.mark.parametrize("damage", ["edit_spill", "delete_summary", "edit_index_counts", "inject_row"])
def test_a_damaged_cache_entry_is_discarded_with_a_warning_and_re_rendered(tmp_path, templates_dir, twin_tasks, damage):
    import pyarrow as pa

    _, flags = twin_tasks
    clean, out = tmp_path / "clean", tmp_path / "out"
    build("--output", str(clean), *flags, "--no-incremental")
    build("--output", str(out), *flags)
    entry = out / CACHE_DIR / "rte" / read_manifest(str(out)).tasks["rte"].fingerprint
    spill = sorted(entry.glob("*.arrow"))[0]
    if damage == "edit_spill":
        data = bytearray(spill.read_bytes())
        data[len(data) // 2] ^= 0x01
        spill.write_bytes(bytes(data))
    elif damage == "delete_summary":
        sorted(entry.glob("*.summary.npz"))[0].unlink()
    elif damage == "edit_index_counts":
        index = json.loads((entry / INDEX_NAME).read_text())
        index["counts"]["read"] += 1
        (entry / INDEX_NAME).write_text(json.dumps(index))
    else:  # a well-formed spill file with one extra, injected record
        table = pa.ipc.open_file(pa.OSFile(str(spill))).read_all()
        with pa.OSFile(str(spill), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(pa.concat_tables([table, table.slice(0, 1)]))
    err = io.StringIO()
    assert run_build_cli(["--output", str(out), *flags], io.StringIO(), err) == 0
    assert "warning: render cache of rte discarded and re-rendered" in err.getvalue()
    m = read_manifest(str(out))
    assert not m.tasks["rte"].from_cache and m.tasks["rte_twin"].from_cache
    assert published(out) == published(clean)
