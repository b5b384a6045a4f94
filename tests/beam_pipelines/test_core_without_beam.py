"""The core (specs, sources, rendering, hashing, build config), schemas/ (with the file layer) and
the trainer's data path work where Apache Beam is not installed: the rules a task is built by can
be used, tested and previewed without a runner."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "apache_beam":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NotInstalled())

    from flanforge.beam_pipelines import catalog, config, hashing, render, sources
    from flanforge.schemas import files, manifest, records, tfexample
    from flanforge.training import data

    tasks = catalog.load_catalog().tasks
    compiled = render.CompiledTask(tasks["rte"])
    assert not list(render.iter_sample_problems(compiled))
    outcome = render.render_row(compiled, tasks["rte"].samples[0], split="train", example_id="e",
                                applications=[render.Application(i) for i in range(compiled.n_templates)])
    assert len(outcome.records) == compiled.n_templates
    assert config.BuildConfig(output="out").render_settings.mode.kind == "all"
    assert hashing.bucket_of(hashing.content_hash("a", "b"), 4) in range(4)
    assert tfexample.ExampleEncoder().encode(outcome.records)
    assert files.read_bytes(str(catalog.TEMPLATES_DIR / "clusters.yaml"))
    assert [f.path for f in files.match_files(str(catalog.TEMPLATES_DIR / "nli" / "rt*.yaml"))] == [str(catalog.TEMPLATES_DIR / "nli" / "rte.yaml")]
    shards = sources.plan_reads(tasks["rte"], demo=True, overrides={})
    assert [r.row for s in shards for r in sources.read_shard(s)] == [dict(r) for r in tasks["rte"].samples]
    assert "apache_beam" not in sys.modules
    print("core ok")
    """
)


def test_core_and_schemas_import_and_work_without_beam() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "core ok" in proc.stdout
