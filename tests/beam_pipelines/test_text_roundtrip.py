"""Text survives byte for byte from a source row to both shard formats: whatever Unicode a row
holds (controls, NUL, combining marks, right-to-left text, emoji, astral planes, CR/LF), the
Parquet and the TFRecord shards give back exactly what the template rendered."""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.schemas.tfexample import Example, read_tfrecords

SPEC = """
name: echo
cluster: misc
description: Echoes a text field, to check that text survives the pipeline byte for byte.
license: test data
metric: exact_match
source: {kind: jsonl, splits: {train: unused.jsonl}}
templates:
  - id: echo_01
    inputs: "{{ text }}"
    targets: "t"
samples:
  - {text: "a sample"}
"""

# Any text but lone surrogates (not Unicode text; a source row holding one is a dead letter).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60).filter(lambda t: t.strip())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXT, min_size=1, max_size=120, unique=True))
def test_any_text_comes_back_exactly_from_parquet_and_tfrecord(texts):
    root = Path(tempfile.mkdtemp())
    (root / "specs" / "misc").mkdir(parents=True)
    (root / "specs" / "misc" / "echo.yaml").write_text(SPEC)
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = root / "out"
    err = io.StringIO()
    code = run_build_cli(["--templates", str(root / "specs"), "--tasks", "echo", "--source", f"echo={data}", "--output", str(out), "--no-progress"], io.StringIO(), err)
    assert code == 0, err.getvalue()
    expected = {t.strip() for t in texts}  # rendered fields are trimmed, nothing else changes
    from_parquet = set(pq.read_table(out / "parquet", columns=["inputs"], partitioning=None).column("inputs").to_pylist())
    from_tfrecord = set()
    for path in (out / "tfrecord").rglob("*.tfrecord"):
        with open(path, "rb") as f:
            for record in read_tfrecords(f):
                from_tfrecord.add(Example.FromString(record).features.feature["inputs"].bytes_list.value[0].decode("utf-8"))
    assert from_parquet == expected and from_tfrecord == expected
