"""Publishing never costs the previous corpus: staging, the swap, an interrupted swap finished,
failed and killed rebuilds, the output lock and the --output checks."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.manifest import assemble_manifest, encode_manifest
from flanforge.beam_pipelines.publish import PUBLISHING_MARK, STAGING_DIR, output_problem, publish, recover
from flanforge.schemas.manifest import ManifestError, read_manifest, verify_shards


def write_corpus(root: Path, output: str, shards: dict[str, bytes]) -> None:
    """A manifest under root listing these files (written there too), as a build of `output` would."""
    infos = []
    for rel, data in shards.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        infos.append({"path": rel, "format": "parquet", "split": "train", "cluster": "nli", "rows": 1, "bytes": len(data), "sha256": "0" * 64})
    manifest = assemble_manifest(BuildConfig(output=output), [], (), [], infos, [])
    (root / "manifest.json").write_bytes(encode_manifest(manifest))


OLD = "parquet/train/nli/part-00000-of-00001.parquet"
NEW = "parquet/train/nli/part-00000-of-00002.parquet"


def test_publish_swaps_in_the_staged_corpus_and_deletes_only_what_the_old_one_listed(tmp_path):
    out = tmp_path / "out"
    write_corpus(out, str(out), {OLD: b"old"})
    mine = out / "parquet" / "notes.txt"
    mine.write_text("a file of the user's, never listed by a manifest")
    write_corpus(out / STAGING_DIR, str(out), {NEW: b"new"})
    publish(str(out))
    assert [s.path for s in read_manifest(str(out)).shards] == [NEW]
    assert (out / NEW).read_bytes() == b"new" and not (out / OLD).exists()
    assert mine.exists() and not (out / STAGING_DIR).exists()


def test_an_interrupted_publish_is_finished_by_the_next_build(tmp_path):
    out = tmp_path / "out"
    write_corpus(out, str(out), {OLD: b"old"})
    write_corpus(out / STAGING_DIR, str(out), {NEW: b"new", "parquet/train/nli/part-00001-of-00002.parquet": b"new2"})
    # killed mid-swap: marked, the old manifest gone, one file moved
    (out / STAGING_DIR / PUBLISHING_MARK).write_text("")
    (out / "manifest.json").unlink()
    (out / NEW).parent.mkdir(parents=True, exist_ok=True)
    os.replace(out / STAGING_DIR / NEW, out / NEW)
    with pytest.raises(ManifestError, match="killed while swapping its corpus in.*run the build into .* again"):
        read_manifest(str(out))
    assert "finished publishing" in recover(str(out))
    assert sorted(s.path for s in read_manifest(str(out)).shards) == [NEW, "parquet/train/nli/part-00001-of-00002.parquet"]
    assert not (out / STAGING_DIR).exists()
    # staging without the mark is an unfinished build's: removed, the corpus untouched
    write_corpus(out / STAGING_DIR, str(out), {OLD: b"half"})
    (out / STAGING_DIR / "manifest.json").unlink()
    assert "removed the unfinished staging files" in recover(str(out))
    assert not (out / STAGING_DIR).exists() and read_manifest(str(out)).shards


def test_publish_on_gcs(gcs_emulator):
    from flanforge.beam_pipelines.storage import write_bytes
    from flanforge.schemas.files import match_files, read_bytes

    out = f"gs://{gcs_emulator.new_bucket()}/out"
    manifest = assemble_manifest(BuildConfig(output=out), [], (), [], [
        {"path": OLD, "format": "parquet", "split": "train", "cluster": "nli", "rows": 1, "bytes": 3, "sha256": "0" * 64}], [])
    write_bytes(f"{out}/{OLD}", b"old")
    write_bytes(f"{out}/manifest.json", encode_manifest(manifest))
    staged = assemble_manifest(BuildConfig(output=out), [], (), [], [
        {"path": NEW, "format": "parquet", "split": "train", "cluster": "nli", "rows": 1, "bytes": 3, "sha256": "0" * 64}], [])
    write_bytes(f"{out}/{STAGING_DIR}/{NEW}", b"new")
    write_bytes(f"{out}/{STAGING_DIR}/manifest.json", encode_manifest(staged))
    write_bytes(f"{out}/.flanforge_cache/rte/f/index.json", b"{}")
    publish(out)
    assert [f.path[len(out) + 1:] for f in match_files(f"{out}/**")] == [".flanforge_cache/rte/f/index.json", "manifest.json", NEW]
    assert read_bytes(f"{out}/{NEW}") == b"new"


def build(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run_build_cli([*args, "--no-progress"], out, err), out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and ".flanforge" not in str(p)}


def test_a_failed_rebuild_leaves_the_previous_corpus_exactly_as_it_was(tmp_path):
    out = tmp_path / "out"
    assert build("--demo", "--output", str(out), "--tasks", "rte")[0] == 0
    before = snapshot(out)
    bad = tmp_path / "rte.jsonl"
    bad.write_text('{"premise": "p"}\n' * 20)  # no hypothesis, no label: every render fails
    code, _, err = build("--output", str(out), "--tasks", "rte", "--source", f"rte={bad}")
    assert code == 1 and "not publishing" in err
    assert snapshot(out) == before
    verify_shards(read_manifest(str(out)), read_manifest(str(out)).shards, check_sha256=True)


def test_a_second_build_into_a_locked_output_stops_and_names_the_first(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".flanforge_lock").write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid, "started": time.time(), "command": "flanforge build --demo"}))
        code, _, err = build("--demo", "--output", str(out), "--tasks", "rte")
        assert code == 2 and f"is being built by another flanforge build (pid {holder.pid} on" in err and "flanforge build --demo" in err
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone now: its lock is stale, the build says so and goes on
    code, _, err = build("--demo", "--output", str(out), "--tasks", "rte")
    assert code == 0 and f"pid {holder.pid}" in err and "was killed; taking over its lock" in err
    assert not (out / ".flanforge_lock").exists()


def test_two_concurrent_builds_one_publishes_the_other_is_refused(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--demo", "--output", str(out), "--tasks", "rte,cb,sst2", "--no-progress"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the first finished before the second took the lock: both are whole builds
        pass
    else:
        assert codes == [0, 2], results
        assert any("is being built by another flanforge build" in err for _, err in results)
    listed = {s.path for s in read_manifest(str(out)).shards}
    assert listed == {str(p.relative_to(out)) for p in out.rglob("part-*") if ".flanforge" not in str(p)}


@pytest.mark.parametrize(
    "where, problem",
    [
        ("/", "is the filesystem root"),
        ("~", "is your home directory"),
        ("file", "is a file, not a directory"),
        ("foreign", "is a non-empty directory that is not a flanforge output"),
        ("foreign_manifest", "holds a manifest.json that is not a flanforge manifest"),
    ],
)
def test_outputs_that_are_not_ours_are_refused_unless_forced(tmp_path, where, problem):
    target = {"/": "/", "~": os.path.expanduser("~")}.get(where, str(tmp_path / where))
    if where == "file":
        Path(target).write_text("x")
    elif where == "foreign":
        Path(target).mkdir()
        (Path(target) / "thesis.tex").write_text("x")
    elif where == "foreign_manifest":
        Path(target).mkdir()
        (Path(target) / "manifest.json").write_text('{"name": "my app"}')
    assert problem in output_problem(target)
    code, _, err = build("--demo", "--output", target, "--tasks", "rte")
    assert code == 2 and problem in err
    if where == "foreign":
        assert build("--demo", "--output", target, "--tasks", "rte", "--force")[0] == 0
        assert (Path(target) / "thesis.tex").exists()  # --force never deletes what no manifest listed


def test_builds_killed_at_any_point_never_lose_the_previous_corpus(tmp_path):
    """SIGKILL a rebuild at several points; after each, the published corpus is the previous one or
    the new one, byte for byte, and it verifies; a final rerun equals a clean build. A kill inside
    the swap itself leaves no root manifest: readers are told so, and finishing it gives the new one."""
    data = tmp_path / "rte.jsonl"
    data.write_text("".join(json.dumps({"premise": f"Premise {i} " * 5, "hypothesis": f"Claim {i % 97}.", "label": i % 2, "idx": i}) + "\n" for i in range(6000)))
    out = tmp_path / "out"
    base = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "build", "--output", str(out), "--tasks", "rte", "--no-progress", "--no-incremental"]
    assert subprocess.run([*base, "--demo"], capture_output=True, timeout=300).returncode == 0
    before = snapshot(out)
    rebuild = [*base, "--source", f"rte={data}"]
    started = time.monotonic()
    done = subprocess.run(rebuild, capture_output=True, timeout=300)
    full = time.monotonic() - started
    assert done.returncode == 0
    clean = snapshot(out)
    # back to the first corpus, then kill rebuilds at spread-out points of a rebuild's run
    assert subprocess.run([*base, "--demo"], capture_output=True, timeout=300).returncode == 0
    assert snapshot(out) == before
    kills = 0
    for fraction in (0.2, 0.45, 0.7, 0.9):
        proc = subprocess.Popen(rebuild, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(full * fraction)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        now = snapshot(out)
        if (out / STAGING_DIR / PUBLISHING_MARK).exists():  # killed inside the swap's few milliseconds
            with pytest.raises(ManifestError, match="killed while swapping"):
                read_manifest(str(out))
            assert "finished publishing" in recover(str(out))
            now = snapshot(out)
            assert now == clean, f"killed at {fraction:.0%} of the run, inside the swap: finishing it did not give the new corpus"
        assert now in (before, clean), f"killed at {fraction:.0%} of the run: the published corpus is neither the old nor the new one"
        verify_shards(read_manifest(str(out)), read_manifest(str(out)).shards, check_sha256=True)
        if now == clean:  # that one finished its swap before the kill: start again from the old corpus
            assert subprocess.run([*base, "--demo"], capture_output=True, timeout=300).returncode == 0
    assert kills >= 2
    assert subprocess.run(rebuild, capture_output=True, timeout=300).returncode == 0
    assert snapshot(out) == clean
