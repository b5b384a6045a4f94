"""A build never imports TensorFlow: TFRecord shards and TFRecord sources go through schemas/tfexample.py.

TensorFlow is the heaviest install by far and takes seconds to import in every worker; only the
trainer's extra needs it."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, io, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_text"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NotInstalled())

    from flanforge.beam_pipelines.build import run_build_cli
    from flanforge.beam_pipelines.sources import example_to_row
    from flanforge.schemas.tfexample import ExampleEncoder, Example

    out = io.StringIO()
    assert run_build_cli(["--demo", "--tasks", "rte,sst2", "--output", sys.argv[1], "--no-progress"], out) == 0, out.getvalue()
    record = {"inputs": "a", "targets": "b", "task": "t", "cluster": "c", "collection": "k", "template_id": "x", "template_type": "zero_shot",
              "options": [], "answer_index": -1, "split": "train", "example_id": "e", "content_hash": "h"}
    payload = ExampleEncoder().encode([record])[12:-4]  # one framed record: 8 + 4 bytes of header, 4 of CRC
    assert example_to_row(payload)["inputs"] == "a"
    assert "tensorflow" not in sys.modules
    print("build ok")
    """
)


def test_a_build_runs_without_tensorflow(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "build ok" in proc.stdout
    assert list((tmp_path / "out" / "tfrecord").rglob("*.tfrecord"))
