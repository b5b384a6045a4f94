"""Where a build's time goes, stage by stage: one in-process build under cProfile, its time
attributed to the data plane's stages by the functions that do each stage's work.

    python benchmarks/stage_profile.py -- --output /tmp/p --source sst2=train.tsv [flanforge build flags]

Prints, per stage, the seconds spent inside its functions (cumulative, as cProfile counts them,
so a stage's share includes what it calls, e.g. Jinja for "render templates") and the share of
the whole build. cProfile roughly doubles the cost of Python function calls, so read the shares,
not the absolute seconds; docs/PERFORMANCE.md quotes them.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import sys
from collections import defaultdict

from flanforge.beam_pipelines.build import run_build_cli

# stage -> (file suffix, function name) pairs whose cumulative time is that stage's work. The
# pairs do not call each other across stages, so their times add up without double counting,
# except that writing a TFRecord file pulls its bytes from the encoder (see stage_times).
STAGES: dict[str, list[tuple[str, str]]] = {
    "plan (catalog, read plan, layout)": [("beam_pipelines/build.py", "plan_build")],
    "read source rows": [("beam_pipelines/sources.py", "read_shard")],
    "prepare rows (fields, filters, labels)": [("beam_pipelines/render.py", "prepare")],
    "choose cap candidates (keys)": [("beam_pipelines/balance.py", "application_keys"), ("beam_pipelines/balance.py", "bottom_k"),
                                     ("beam_pipelines/balance.py", "row_key")],
    "render templates (Jinja)": [("beam_pipelines/render.py", "render_prepared")],
    "spill to Arrow IPC": [("beam_pipelines/spill.py", "add"), ("beam_pipelines/spill.py", "close")],
    "dedup decisions (hash summaries)": [("beam_pipelines/dedup.py", "summary_parts"), ("beam_pipelines/dedup.py", "decide")],
    "shard writer: read spill, dedup, cap, sort": [("beam_pipelines/spill.py", "read_spilled"), ("beam_pipelines/dedup.py", "first_copies"),
                                                   ("beam_pipelines/shards.py", "lost_to_other_clusters"), ("beam_pipelines/shards.py", "over_cap")],
    "encode TFRecord": [("beam_pipelines/shards.py", "tfrecord_chunks")],
    "encode Parquet": [("beam_pipelines/shards.py", "encode_parquet")],
    "write files": [("beam_pipelines/storage.py", "write_chunks")],
}


def stage_times(stats: pstats.Stats) -> dict[str, float]:
    times: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for stage, places in STAGES.items():
            if any(filename.endswith(suffix) and function == name for suffix, name in places):
                times[stage] += cumulative
    times["write files"] -= times["encode TFRecord"]  # write_chunks runs the TFRecord encoder as it writes
    return times


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    profile = cProfile.Profile()
    profile.enable()
    code = run_build_cli([*argv, "--no-progress"], io.StringIO())
    profile.disable()
    if code:
        sys.exit(f"the build failed (exit {code})")
    stats = pstats.Stats(profile)
    total = max(c for (_, _, f), (_, _, _, c, _) in stats.stats.items() if f == "run_build_cli")  # type: ignore[attr-defined]
    times = stage_times(stats)
    print(f"{'stage':<46}{'seconds':>9}{'share':>8}")
    for stage in STAGES:
        print(f"{stage:<46}{times[stage]:>9.2f}{times[stage] / total:>8.0%}")
    rest = total - sum(times.values())
    print(f"{'Beam (runner, coders, bundles) and the rest':<46}{rest:>9.2f}{rest / total:>8.0%}")
    print(f"{'whole build (under cProfile)':<46}{total:>9.2f}")


if __name__ == "__main__":
    main()
