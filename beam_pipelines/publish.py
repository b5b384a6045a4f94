"""Publishing: a build never touches the corpus it replaces until it has a complete one.

A build writes its shards, dead letters and manifest under `<output>/.flanforge_staging/`. The
published corpus (the root's `manifest.json` and the files it lists) stays complete and readable
all that time, so a build that fails, is killed or loses its storage leaves it exactly as it was.
Only when the staged manifest exists does the `Publish` step, the last of the pipeline, swap:

  1. mark the staging folder PUBLISHING (the staged build is complete; from here on, forward),
  2. remove the root manifest (the old corpus is unpublished: readers trust only the manifest),
  3. delete the files the old manifest listed (never a file it did not list),
  4. move the staged files into place (a rename on local disk; copy and delete on Cloud Storage,
     which has no rename),
  5. move the staged manifest to the root, last, then remove the staging folder.

Each step can be repeated, so a publish that is interrupted is finished by the next build into
the same output (`recover`): the previous corpus is replaced by a complete new one, never left
half-swapped. Steps 2-5 take milliseconds locally; on Cloud Storage, as long as copying the
shards takes. Shard names repeat from build to build, so there is no single rename that swaps
every file: a reader that comes between steps 2 and 5 (or after a kill there) finds no root
manifest and is told that the swap was interrupted and that the next build finishes it.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import apache_beam as beam

from flanforge.beam_pipelines.card import CARD_MARK, CARD_NAME
from flanforge.beam_pipelines.storage import delete, delete_tree, exists, move, write_bytes
from flanforge.schemas.files import is_remote, join_path, read_bytes
from flanforge.schemas.manifest import MANIFEST_FORMAT, MANIFEST_NAME, PUBLISHING_MARK, STAGING_DIR, ManifestError, read_manifest
from flanforge.schemas.records import FORMATS

PUBLISHED_DIRS = (*FORMATS, "dead_letters", "near_duplicates")


def staging_root(output: str) -> str:
    return join_path(output, STAGING_DIR)


def _listed_files(root: str) -> list[str]:
    """The files a manifest under root lists (shards and dead letters), relative to root."""
    manifest = read_manifest(root)
    return [s.path for s in manifest.shards] + [d.path for d in manifest.dead_letters] + [s.path for s in manifest.near_duplicate_samples]


def publish(output: str) -> None:
    """Swap the staged build in for the published one (the module docstring's steps)."""
    staging = staging_root(output)
    new_files = _listed_files(staging)
    write_bytes(join_path(staging, PUBLISHING_MARK), b"the staged build is complete and being published\n")
    old_manifest = join_path(output, MANIFEST_NAME)
    old_files: list[str] = []
    if exists(old_manifest):
        try:
            old_files = _listed_files(output)
        except ManifestError:
            old_files = []  # launch checks refuse a foreign manifest.json; a damaged one of ours lists nothing we trust
        delete([old_manifest])
    moving = set(new_files)
    stale = [join_path(output, p) for p in old_files if p not in moving and exists(join_path(output, p))]
    delete(stale)
    for rel in new_files:
        if exists(join_path(staging, rel)):  # an earlier, interrupted publish may have moved it already
            move(join_path(staging, rel), join_path(output, rel))
    _publish_card(staging, output)
    move(join_path(staging, MANIFEST_NAME), old_manifest)
    _remove_empty_dirs(output)
    delete_tree(staging)


def _publish_card(staging: str, output: str) -> None:
    """The dataset card replaces the root README.md only when that is absent or a card of ours."""
    staged, published = join_path(staging, CARD_NAME), join_path(output, CARD_NAME)
    if not exists(staged):
        return
    if not exists(published) or CARD_MARK.encode() in read_bytes(published)[:4096]:
        move(staged, published)


def recover(output: str) -> str | None:
    """Before a build: finish a publish that was interrupted, or clear an unfinished build's
    staging folder. Returns what was done, for the console, or None."""
    staging = staging_root(output)
    if exists(join_path(staging, PUBLISHING_MARK)):
        publish(output)
        return f"finished publishing the previous build into {output} (it was interrupted while swapping)"
    if exists(join_path(staging, MANIFEST_NAME)) or _has_files(staging):
        delete_tree(staging)
        return f"removed the unfinished staging files of an earlier build from {staging}"
    return None


def _has_files(root: str) -> bool:
    from flanforge.schemas.files import match_files

    return bool(match_files(join_path(root, "**")) if is_remote(root) else os.path.isdir(root))


def _remove_empty_dirs(output: str) -> None:
    """Partition folders left empty by the old corpus (local disk only: object stores have none)."""
    if is_remote(output):
        return
    for top in PUBLISHED_DIRS:
        for folder, _, _ in sorted(os.walk(os.path.join(output, top)), key=lambda w: -len(w[0])):
            try:
                os.rmdir(folder)  # only succeeds when empty
            except OSError:
                pass


class Publish(beam.PTransform):
    """The staged manifest's path -> the published one's, once every file of the build exists."""

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, staged: beam.PCollection) -> beam.PCollection:
        output = self._output

        def swap(_: Any) -> Iterator[str]:
            publish(output)
            yield join_path(output, MANIFEST_NAME)

        return staged | "Swap" >> beam.FlatMap(swap)


OURS = (MANIFEST_NAME, STAGING_DIR, ".flanforge_cache", ".flanforge_spill", ".flanforge_lock", *PUBLISHED_DIRS)


def output_problem(output: str) -> str | None:
    """Why a local --output must not be built into (without --force): a root or home directory,
    a file, or a non-empty directory that is not a flanforge output; or a manifest.json that is
    not ours. A build only ever deletes files its previous manifest listed, but a wrong --output
    is better refused before anything runs."""
    if is_remote(output):
        manifest = join_path(output, MANIFEST_NAME)
        if exists(manifest) and not is_flanforge_manifest(manifest):
            return f"--output {output} holds a {MANIFEST_NAME} that is not a flanforge manifest; choose another --output (or --force)"
        return None
    path = os.path.realpath(output)
    if path == os.path.realpath(os.sep) or path == os.path.realpath(os.path.expanduser("~")):
        return f"--output {output} is {'the filesystem root' if path == os.sep else 'your home directory'}; give a directory of its own"
    if os.path.exists(path) and not os.path.isdir(path):
        return f"--output {output} is a file, not a directory"
    if not os.path.isdir(path):
        return None
    entries = set(os.listdir(path))
    manifest = os.path.join(path, MANIFEST_NAME)
    if MANIFEST_NAME in entries and not is_flanforge_manifest(manifest):
        return f"--output {output} holds a {MANIFEST_NAME} that is not a flanforge manifest; choose another --output (or --force)"
    foreign = sorted(entries - set(OURS))
    if foreign and not entries & set(OURS):
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        return f"--output {output} is a non-empty directory that is not a flanforge output ({shown}); choose an empty or new directory (or --force)"
    return None


def is_flanforge_manifest(path: str) -> bool:
    """Whether a manifest.json is one of ours (so a rebuild may replace it)."""
    import json

    try:
        data = json.loads(read_bytes(path))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT
