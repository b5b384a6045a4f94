"""README.md's command list, run as written: every command that needs only this checkout runs in
a fresh folder; the others (placeholder paths, a server, the cloud) are named here with the test
that covers them, so a command added to the README without either fails this test."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SETUP = "flanforge build --demo --output out/demo"  # what README's first command leaves behind
NOT_RUN = {
    "flanforge studio": "a server: tests/studio/ starts it and drives it in Chromium",
    "flanforge import promptsource path/to/": "a placeholder path: tests/beam_pipelines/test_promptsource.py",
    "flanforge build --tasks niv2": "a placeholder path: tests/beam_pipelines/test_niv2.py",
    "flanforge build --output out/sst2": "placeholder files: tests/beam_pipelines/test_build_realdata.py",
    "flanforge build --recipe flan2021 --output gs://": "Dataflow: tests/beam_pipelines/test_dataflow.py (dry run)",
}


def readme_commands() -> list[str]:
    block = re.search(r"## Commands\n\n```bash\n(.*?)```", README.read_text(), re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def test_every_readme_command_is_run_or_accounted_for():
    unknown = [c for c in readme_commands() if not c.startswith("flanforge ")]
    assert unknown == []
    skipped = [c for c in readme_commands() if any(c.startswith(p) for p in NOT_RUN)]
    assert len(skipped) == len(NOT_RUN), "each NOT_RUN entry names one README command"


def test_the_readme_commands_run_as_written(tmp_path: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "CI": "true"}
    commands = [SETUP] + [c for c in readme_commands() if not any(c.startswith(p) for p in NOT_RUN)]
    for command in commands:
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-2500:]}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr[-2500:]}"
    assert (tmp_path / "out" / "demo" / "report.html").exists()
    assert (tmp_path / "out" / "flan2021" / "manifest.json").exists()
