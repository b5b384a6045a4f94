"""docs/TRAINING.md's CPU sequence, run as written (build, train, evaluate), in a fresh folder:
the commands a newcomer copies must work, and say where their results went."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "TRAINING.md"


def cpu_block() -> str:
    text = DOC.read_text()
    section = text[text.index("## On CPU"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_cpu_sequence_in_training_md_runs_as_written(tmp_path: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", cpu_block()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"step 200/200: loss [\d.]+, [\d,]+ tokens/s, padding [\d.]+%, ETA 0:00:00", out)
    assert "checkpoint: runs/tiny/checkpoints/step-00000200" in out and "metrics: runs/tiny/metrics.json" in out
    assert "cluster  task             examples  metric" in out and "results: runs/tiny/eval.json" in out
    assert (tmp_path / "runs" / "tiny" / "eval.json").exists()
    assert "cuInit" not in done.stderr and "absl::InitializeLog" not in done.stderr and "destroy the mask" not in done.stderr
