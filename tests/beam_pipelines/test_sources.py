import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flanforge.beam_pipelines import sources
from flanforge.beam_pipelines.sources import hub as hub_source
from flanforge.beam_pipelines.sources import jsonl as jsonl_source
from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.sources import ReadProblem, SourceError, SourceRow, plan_files, plan_reads, read_rows_at, read_shard


@pytest.fixture
def rte(templates_dir):
    return load_catalog(templates_dir).tasks["rte"]


def rows_of(shards):
    return [item for s in shards for item in read_shard(s)]


@settings(max_examples=30, deadline=None)
@given(lines=st.lists(st.text(alphabet="abc é\"", max_size=40), min_size=1, max_size=60), shard_bytes=st.integers(1, 200))
def test_jsonl_byte_ranges_read_every_line_exactly_once(lines, shard_bytes):
    rte = load_catalog().tasks["rte"]
    path = Path(tempfile.mkdtemp()) / "data.jsonl"
    path.write_text("".join(json.dumps({"premise": t, "n": i}) + "\n" for i, t in enumerate(lines)))
    old = jsonl_source.SHARD_BYTES
    jsonl_source.SHARD_BYTES = shard_bytes
    try:
        shards = plan_files(rte, "train", str(path))
    finally:
        jsonl_source.SHARD_BYTES = old
    got = rows_of(shards)
    assert [r.row["n"] for r in got] == list(range(len(lines)))
    assert len({r.example_id for r in got}) == len(lines)


def test_malformed_jsonl_line_is_a_problem_not_a_crash(tmp_path, rte):
    path = tmp_path / "d.jsonl"
    path.write_text('{"premise": "a"}\n{not json\n[1, 2]\n\n{"premise": "b"}\n')
    got = rows_of(plan_files(rte, "train", str(path)))
    assert [r.row["premise"] for r in got if isinstance(r, SourceRow)] == ["a", "b"]
    problems = [p for p in got if isinstance(p, ReadProblem)]
    assert [p.error.split(":")[0] for p in problems] == ["malformed JSON", "expected a JSON object, got list"]
    assert problems[0].where == "d.jsonl byte 17" and problems[0].text == "{not json"


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_rows_can_be_read_again_by_position(tmp_path, rte, name):
    """The second pass over a capped shard reads only the rows it chose, and gets them exactly."""
    import gzip

    text = '{"premise": "a"}\n{not json\n{"premise": "b"}\n\n{"premise": "c"}\n{"premise": "d"}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    [shard] = plan_files(rte, "train", str(path))
    rows = [r for r in read_shard(shard) if isinstance(r, SourceRow)]
    wanted = {r.position: r.ordinal for r in (rows[1], rows[3])}
    assert list(read_rows_at(shard, wanted)) == [rows[1], rows[3]]


def test_id_field_gives_stable_ids(tmp_path, rte):
    path = tmp_path / "d.jsonl"
    path.write_text('{"idx": 7, "premise": "a"}\n')
    assert rows_of(plan_files(rte, "validation", str(path)))[0].example_id == "validation:7"


def test_missing_and_empty_sources_fail_early(tmp_path, rte):
    with pytest.raises(SourceError, match=r"task rte split train: source '.*nothing\*.jsonl' matched no files"):
        plan_files(rte, "train", str(tmp_path / "nothing*.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SourceError, match="is empty"):
        plan_files(rte, "train", str(tmp_path / "empty.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SourceError, match="cannot tell the format"):
        plan_files(rte, "train", str(tmp_path / "x.txt"))


def test_csv_tsv_parquet_and_glob(tmp_path, rte):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.tsv").write_text('premise\tlabel\nsaid "hi"\t0\nbad\trow\textra\nok\t1\n')
    (tmp_path / "b.csv").write_text('premise,label\n"x, y",1\n')
    pq.write_table(pa.table({"premise": ["p1", "p2", "p3"], "label": [0, 1, 0]}), tmp_path / "c.parquet", row_group_size=2)
    tsv = rows_of(plan_files(rte, "train", str(tmp_path / "a.tsv")))
    assert [r.row for r in tsv if isinstance(r, SourceRow)] == [{"premise": 'said "hi"', "label": "0"}, {"premise": "ok", "label": "1"}]
    assert any(isinstance(p, ReadProblem) and "expected 2 columns, got 3" in p.error for p in tsv)
    assert rows_of(plan_files(rte, "train", str(tmp_path / "b.csv")))[0].row == {"premise": "x, y", "label": "1"}
    parquet_shards = plan_files(rte, "train", str(tmp_path / "c.parquet"))
    assert len(parquet_shards) == 2 and [r.row["premise"] for r in rows_of(parquet_shards)] == ["p1", "p2", "p3"]
    assert [s.id_prefix for s in plan_files(rte, "train", str(tmp_path / "*.*"))] == ["a.tsv", "b.csv", "c.parquet", "c.parquet"]


def test_hf_save_to_disk_and_load_dataset_paths_offline(tmp_path, rte, monkeypatch):
    import dataclasses

    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets.Dataset.from_dict({"premise": ["a", "b", "c"], "label": [0, 1, 0]}).save_to_disk(str(tmp_path / "saved"))
    disk = rows_of(plan_reads(rte, demo=False, overrides={"train": str(tmp_path / "saved")}))
    assert [r.row["premise"] for r in disk] == ["a", "b", "c"]

    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"premise": p, "label": 0, "idx": i}) + "\n" for i, p in enumerate("xyz")))
    spec = dataclasses.replace(
        rte,
        source=dataclasses.replace(rte.source, kind="hf", path="json", name=None, data_files={"train": str(tmp_path / "train.jsonl")}, splits={"train": "train"}),
    )
    hub = rows_of(plan_reads(spec, demo=False, overrides={}))
    assert [(r.example_id, r.row["premise"]) for r in hub] == [("train:0", "x"), ("train:1", "y"), ("train:2", "z")]


def test_demo_reads_the_spec_samples(rte):
    got = rows_of(plan_reads(rte, demo=True, overrides={}))
    assert len(got) == len(rte.samples) and got[0].split == "train"


def test_json_array_file_is_refused_with_a_hint(tmp_path, rte):
    (tmp_path / "d.json").write_text('[{"premise": "a"}]')
    with pytest.raises(SourceError, match="is a JSON array; flanforge reads JSON Lines"):
        plan_files(rte, "train", str(tmp_path / "d.json"))


def test_parquet_ids_are_unique_across_row_groups(tmp_path, rte):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"premise": list("abcde")}), tmp_path / "d.parquet", row_group_size=2)
    shards = plan_files(rte, "train", str(tmp_path / "d.parquet"))
    assert [(s.start, s.end, s.row_group) for s in shards] == [(0, 2, 0), (2, 4, 1), (4, 5, 2)]
    assert [r.example_id for r in rows_of(shards)] == [f"train:d.parquet:{i}" for i in range(5)]
    assert len({s.key for s in shards}) == 3


def test_unreadable_parquet_fails_before_the_pipeline(tmp_path, rte):
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(SourceError, match=r"^task rte split train: cannot read .*bad.parquet: "):
        plan_files(rte, "train", str(tmp_path / "bad.parquet"))


def test_gzipped_jsonl_is_read_through_gzip(tmp_path, rte):
    import gzip

    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(b'{"premise": "a"}\n{"premise": "b"}\n'))
    assert [r.row["premise"] for r in rows_of(plan_files(rte, "train", str(tmp_path / "d.jsonl.gz")))] == ["a", "b"]


def test_hf_disk_reads_the_source_split_when_it_becomes_another_output_split(tmp_path, rte):
    """A held-out task reads validation as eval_zeroshot: the DatasetDict must still be indexed by 'validation'."""
    import datasets

    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"premise": ["t"]}), "validation": datasets.Dataset.from_dict({"premise": ["v1", "v2"]})}
    ).save_to_disk(str(tmp_path / "saved"))
    shards = plan_reads(rte, demo=False, overrides={"validation": str(tmp_path / "saved")}, splits={"validation": "eval_zeroshot"})
    got = rows_of(shards)
    assert [(r.split, r.row["premise"]) for r in got] == [("eval_zeroshot", "v1"), ("eval_zeroshot", "v2")]


def test_every_file_kind_reads_the_same_from_gcs(gcs_emulator, tmp_path, rte):
    """Local files and their gs:// copies give the same shards (but for location) and the same rows and ids."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gcs_files import upload_tree

    local = tmp_path / "data"
    (local / "rte").mkdir(parents=True)
    (local / "rte" / "a.jsonl").write_text("".join(json.dumps({"premise": f"p{i}"}) + "\n" for i in range(40)) + "{broken\n")
    (local / "rte" / "b.csv").write_text('premise,label\n"x, y",1\n')
    (local / "rte" / "c.tsv").write_text("premise\tlabel\nq\t0\n")
    pq.write_table(pa.table({"premise": ["r1", "r2", "r3"]}), local / "rte" / "d.parquet", row_group_size=2)
    root = upload_tree(local, f"gs://{gcs_emulator.new_bucket()}/data")

    old = jsonl_source.SHARD_BYTES
    jsonl_source.SHARD_BYTES = 100  # several byte-range shards: exercises seeking on a GCS reader
    try:
        local_shards = plan_files(rte, "train", str(local / "rte" / "*"))
        gcs_shards = plan_files(rte, "train", f"{root}/rte/*")
    finally:
        jsonl_source.SHARD_BYTES = old
    assert len([s for s in gcs_shards if s.kind == "jsonl"]) > 1
    assert [dataclasses.replace(s, location="") for s in gcs_shards] == [dataclasses.replace(s, location="") for s in local_shards]
    assert gcs_shards[0].location == f"{root}/rte/a.jsonl"
    assert rows_of(gcs_shards) == rows_of(local_shards)
    assert sum(isinstance(r, ReadProblem) for r in rows_of(gcs_shards)) == 1


def test_bad_gcs_sources_fail_early_in_one_line(gcs_emulator, rte):
    bucket = gcs_emulator.new_bucket()
    with pytest.raises(SourceError, match=rf"^task rte split train: source 'gs://{bucket}/none/\*.jsonl' matched no files$"):
        plan_reads(rte, demo=False, overrides={"train": f"gs://{bucket}/none/*.jsonl"})
    with pytest.raises(SourceError, match=r"^task rte split validation: source 'gs://no-such-bucket-x/\*.jsonl' cannot be listed: [^\n]*NotFound"):
        plan_reads(rte, demo=False, overrides={"validation": "gs://no-such-bucket-x/*.jsonl"})
    with pytest.raises(SourceError, match=r"^task rte split train: source 'gs://no-such-bucket-x/d.jsonl' matched no files$"):
        plan_reads(rte, demo=False, overrides={"train": "gs://no-such-bucket-x/d.jsonl"})
    with pytest.raises(SourceError, match=r"^task rte split train: gs://b/saved: save_to_disk directories are read from local disk only"):
        hub_source.plan_disk_directory(rte, "train", "gs://b/saved", "train")


def _hub_layout(root: Path) -> None:
    """A dataset folder laid out as a hub repository: data/<split>-NNNNN-of-NNNNN.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True)
    pq.write_table(pa.table({"premise": [f"a{i}" for i in range(5)], "label": [i % 2 for i in range(5)]}), root / "data" / "train-00000-of-00002.parquet", row_group_size=2)
    pq.write_table(pa.table({"premise": ["b0", "b1"], "label": [1, 0]}), root / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.table({"premise": ["v0"], "label": [0]}), root / "data" / "validation-00000-of-00001.parquet")


def test_parquet_backed_hf_source_is_planned_per_row_group_and_matches_load_dataset(tmp_path, rte, monkeypatch):
    import dataclasses

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hub_layout(tmp_path / "repo")
    spec = dataclasses.replace(
        rte, source=dataclasses.replace(rte.source, kind="hf", path=str(tmp_path / "repo"), name=None, id_field=None, splits={"train": "train", "validation": "validation"})
    )
    shards = plan_reads(spec, demo=False, overrides={}, splits={"train": "train"})
    assert [(s.kind, s.row_group, s.start, s.end) for s in shards] == [("parquet", 0, 0, 2), ("parquet", 1, 2, 4), ("parquet", 2, 4, 5), ("parquet", 0, 5, 7)]
    assert shards[0].location.endswith("train-00000-of-00002.parquet") and shards[3].location.endswith("train-00001-of-00002.parquet")

    by_row_groups = rows_of(shards)
    whole = sources.SourceShard(task="rte", split="train", kind="hf", location=str(tmp_path / "repo"), start=0, end=7, id_prefix="train", hf_split="train")
    by_load_dataset = list(read_shard(whole))
    assert [(r.example_id, r.row) for r in by_row_groups] == [(r.example_id, r.row) for r in by_load_dataset]
    assert [r.example_id for r in by_row_groups][-1] == "train:train:6"
    # The held-out path: validation read as another output split keeps the hub split for resolving files.
    held = plan_reads(spec, demo=False, overrides={}, splits={"validation": "eval_zeroshot"})
    assert [(r.split, r.row["premise"]) for r in rows_of(held)] == [("eval_zeroshot", "v0")]


def test_hf_source_that_is_not_parquet_falls_back_to_load_dataset(tmp_path, rte, monkeypatch):
    import dataclasses

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "t.jsonl").write_text('{"premise": "x"}\n{"premise": "y"}\n')
    spec = dataclasses.replace(
        rte, source=dataclasses.replace(rte.source, kind="hf", path="json", name=None, data_files={"train": str(tmp_path / "t.jsonl")}, splits={"train": "train"})
    )
    shards = plan_reads(spec, demo=False, overrides={})
    assert [(s.kind, s.start, s.end) for s in shards] == [("hf", 0, 2)]
    with pytest.raises(SourceError, match=r"^task rte split train: cannot load HF dataset 'json'"):
        plan_reads(dataclasses.replace(spec, source=dataclasses.replace(spec.source, data_files={"train": str(tmp_path / "missing.jsonl")})), demo=False, overrides={})


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
))
def test_json_lines_parse_exactly_as_the_standard_library_does(value):
    line = json.dumps(value).encode()
    assert sources.parse_json_line(line) == json.loads(line)
    assert type(sources.parse_json_line(line)) is type(json.loads(line))


def test_json_lines_the_fast_parser_would_change_go_to_the_standard_one():
    for line in (b'{"n": 123456789012345678901234567890}', b'{"x": 1e400}', b'{"x": NaN}', b'{"s": "\\ud83d\\ude00"}'):
        assert sources.parse_json_line(line) == json.loads(line) or "NaN" in line.decode()
    with pytest.raises(ValueError, match="Expecting"):
        sources.parse_json_line(b"{not json")
    # a lone surrogate is not Unicode text: it would fail every later step, so the row is refused here
    with pytest.raises(ValueError, match="lone surrogate"):
        sources.parse_json_line(b'{"s": "bad \\ud800 here"}')


def test_an_unreachable_hub_fails_fast_with_what_to_do_instead():
    import os
    import subprocess
    import sys

    script = (
        "import time\n"
        "from flanforge.beam_pipelines.catalog import load_catalog\n"
        "from flanforge.beam_pipelines.sources import plan_reads, SourceError\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    plan_reads(load_catalog().tasks['rte'], demo=False, overrides={})\n"
        "except SourceError as e:\n"
        "    print(f'{time.monotonic() - t:.1f} {e}')\n"
    )
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on the discard port
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_DATASETS_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    seconds, _, message = done.stdout.strip().partition(" ")
    assert float(seconds) < 10, done.stdout + done.stderr[-2000:]
    assert "the Hugging Face hub (127.0.0.1:9) cannot be reached" in message and "--source rte:train=PATH" in message and "HF_HUB_OFFLINE=1" in message
