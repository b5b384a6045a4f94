"""Readers on real public files as distributed (tests/data/realdata, byte for byte), and on files
that reproduce one quirk each: header-less, `.txt` TSV, quotes in TSV, BOM + CRLF, cp1252,
invalid UTF-8, numeric-looking text, empty cells, line-aligned files and list fields. Each test
checks the records read, not just that nothing crashed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realdata import REALDATA, esnli_spec

from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.sources import ReadProblem, SourceError, SourceRow, plan_files, plan_reads, read_rows_at, read_shard


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def read_all(shards):
    items = [item for s in shards for item in read_shard(s)]
    return [i for i in items if isinstance(i, SourceRow)], [i for i in items if isinstance(i, ReadProblem)]


def test_headed_glue_tsv_keeps_quotes_and_every_cell_a_string(catalog):
    rows, problems = read_all(plan_files(catalog.tasks["rte"], "train", str(REALDATA / "glue_rte" / "dev.tsv")))
    assert not problems and len(rows) == 30
    first = rows[0].row
    assert list(first) == ["index", "sentence1", "sentence2", "label"]
    assert first["index"] == "0" and first["label"] == "not_entailment"  # strings, as in the file
    # dev line 8 holds an unbalanced '"': TSV has no quoting, so it stays text and the rows stay aligned
    assert any('"' in r.row["sentence1"] + r.row["sentence2"] for r in rows)
    assert [r.example_id for r in rows[:2]] == ["train:dev.tsv:0", "train:dev.tsv:1"]  # data records from 0


def test_header_less_tsv_needs_columns_and_then_reads_every_row(tmp_path, catalog):
    qqp = catalog.tasks["qqp"]
    lines = (REALDATA / "glue_qqp" / "train.tsv").read_bytes().splitlines(keepends=True)
    quora = tmp_path / "quora_duplicate_questions.txt"
    quora.write_bytes(b"".join(lines[1:]))  # the same rows without the header line
    with pytest.raises(SourceError, match="cannot tell the format from the extension.*#format=tsv"):
        plan_files(qqp, "train", str(quora))
    columns = "id|qid1|qid2|question1|question2|is_duplicate"
    shards = plan_reads(qqp, demo=False, overrides={"train": f"{quora}#format=tsv,header=false,columns={columns},types=is_duplicate:int"})
    rows, problems = read_all(shards)
    assert not problems and len(rows) == 9
    assert rows[0].row["question1"] == "How is the life of a math student? Could you describe your own experiences?"
    assert rows[0].row["id"] == "133273" and rows[0].row["is_duplicate"] == 0
    assert rows[0].position == 0 and rows[-1].position == 8


def test_header_false_without_columns_is_refused_before_reading(catalog):
    with pytest.raises(ValueError, match="header: false needs `columns`"):
        plan_reads(catalog.tasks["qqp"], demo=False, overrides={"train": f"{REALDATA / 'glue_qqp' / 'train.tsv'}#header=false"})


def test_msrp_txt_with_bom_crlf_and_stray_quotes(catalog):
    shards = plan_reads(catalog.tasks["mrpc"], demo=False, overrides={"train": f"{REALDATA / 'msrp' / 'msr_paraphrase_train.txt'}#format=tsv"})
    rows, problems = read_all(shards)
    assert not problems and len(rows) == 40  # CSV quoting would have merged lines at the stray '"'
    assert list(rows[0].row) == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]  # BOM gone from the first name
    assert not any(v.endswith("\r") for r in rows for v in r.row.values())  # CRLF gone from the last cell
    assert rows[0].row["Quality"] == "1" and rows[0].row["#1 ID"] == "702876"


def test_ag_news_header_less_quoted_csv(catalog):
    path = REALDATA / "ag_news" / "train.csv"
    shards = plan_reads(catalog.tasks["ag_news_subset"], demo=False, overrides={"train": f"{path}#header=false,columns=class|title|description"})
    rows, problems = read_all(shards)
    assert not problems and len(rows) == 45
    assert rows[0].row == {
        "class": "3",
        "title": "Wall St. Bears Claw Back Into the Black (Reuters)",
        "description": "Reuters - Short-sellers, Wall Street's dwindling\\band of ultra-cynics, are seeing green again.",
    }


def test_cp1252_file_reads_with_its_encoding_and_fails_per_line_without(tmp_path, catalog):
    neg = REALDATA / "rt_polarity" / "rt-polarity.neg"
    table = tmp_path / "neg.tsv"
    table.write_bytes(b"text\n" + neg.read_bytes())
    sst2 = catalog.tasks["sst2"]
    rows, problems = read_all(plan_reads(sst2, demo=False, overrides={"train": f"{table}#encoding=cp1252"}))
    assert not problems and len(rows) == 40
    assert any("\u2014" in r.row["text"] or "é" in r.row["text"] for r in rows)  # 0x97 / 0xe9 decoded as cp1252
    rows, problems = read_all(plan_files(sst2, "train", str(table)))  # read as UTF-8: those lines fail, named
    assert problems and len(rows) + len(problems) == 40
    first = problems[0]
    assert first.where.startswith("neg.tsv line ") and "not valid utf-8 at byte" in first.error and first.text


def test_numeric_looking_text_empty_cells_and_declared_types(tmp_path, catalog):
    path = tmp_path / "d.csv"
    path.write_text('code,zip,score,note,label\n0012,02139,1e3,,7\n7,00000,0.50,"a, b",\n')
    sst2 = catalog.tasks["sst2"]
    rows, problems = read_all(plan_reads(sst2, demo=False, overrides={"train": f"{path}#types=score:float"}))
    assert not problems
    # sst2's spec types `label` (int) and `idx`; declared here: score. Everything else stays text.
    assert rows[0].row == {"code": "0012", "zip": "02139", "score": 1000.0, "note": "", "label": 7}
    assert rows[1].row == {"code": "7", "zip": "00000", "score": 0.5, "note": "a, b", "label": None}
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\nfine,1\nbroken,yes\n")
    rows, problems = read_all(plan_files(sst2, "train", str(bad)))
    assert [r.row["label"] for r in rows] == [1]
    assert problems[0].where == "bad.csv line 3" and "column 'label'" in problems[0].error and problems[0].text == "broken,yes"


def test_quoted_newlines_survive_at_any_size(tmp_path, catalog):
    path = tmp_path / "big.csv"
    body = "".join(f'{i},"line one of {i}\nline two of {i}"\n' for i in range(30_000))  # ~1.2 MB
    path.write_text("idx,sentence\n" + body)
    rows, problems = read_all(plan_files(catalog.tasks["sst2"], "train", str(path)))
    assert not problems and len(rows) == 30_000
    assert rows[-1].row["sentence"] == "line one of 29999\nline two of 29999" and rows[-1].position == 29_999


def test_ragged_rows_are_dead_letters_with_line_and_text(tmp_path, catalog):
    path = tmp_path / "r.tsv"
    path.write_text("sentence\tlabel\nok\t1\ntoo\tmany\tcells\nfine\t0\n")
    rows, problems = read_all(plan_files(catalog.tasks["sst2"], "train", str(path)))
    assert [r.row["sentence"] for r in rows] == ["ok", "fine"]
    assert [(p.where, p.error, p.text) for p in problems] == [("r.tsv line 3", "expected 2 columns, got 3", "too\tmany\tcells")]


def test_line_aligned_esnli_files_make_one_row_per_line(tmp_path):
    root = tmp_path / "templates"
    (root / "nli").mkdir(parents=True)
    esnli = REALDATA / "esnli"
    (root / "nli" / "esnli.yaml").write_text(esnli_spec("test"))
    spec = load_catalog(root).tasks["esnli"]
    rows, problems = read_all(plan_reads(spec, demo=False, overrides={}))
    assert not problems and len(rows) == 40
    assert rows[0].row == {
        "premise": (esnli / "s1.test").read_text().splitlines()[0],
        "hypothesis": (esnli / "s2.test").read_text().splitlines()[0],
        "label": "neutral",
        "explanation": "not all churches have cracks in the ceiling",
    }
    assert rows[0].example_id == "test:test:1"


def test_line_aligned_files_of_different_lengths_are_refused(tmp_path):
    root = tmp_path / "templates"
    (root / "nli").mkdir(parents=True)
    short = tmp_path / "labels.test"
    short.write_text("neutral\nentailment\n")
    (root / "nli" / "esnli.yaml").write_text(esnli_spec("test").replace(str(REALDATA / "esnli" / "labels.test"), str(short)))
    spec = load_catalog(root).tasks["esnli"]
    with pytest.raises(SourceError, match=r"line-aligned files differ in length .*labels.test: 2 lines"):
        plan_reads(spec, demo=False, overrides={})


def test_piqa_jsonl_joined_with_its_label_file(tmp_path):
    root = tmp_path / "templates"
    (root / "commonsense").mkdir(parents=True)
    piqa = REALDATA / "piqa"
    spec_text = PIQA_SPEC.format(jsonl=piqa / "valid.jsonl", labels=piqa / "valid-labels.lst")
    (root / "commonsense" / "piqa_aligned.yaml").write_text(spec_text)
    spec = load_catalog(root).tasks["piqa_aligned"]
    rows, problems = read_all(plan_reads(spec, demo=False, overrides={}))
    assert not problems and len(rows) == 30
    assert rows[0].row["goal"].startswith("How do I ready a guinea pig cage") and rows[0].row["label"] == "0"
    assert set(rows[0].row) == {"goal", "sol1", "sol2", "label"}


def test_list_field_exploded_one_row_per_answer_or_first_only(catalog):
    nq = catalog.tasks["natural_questions"]
    path = REALDATA / "nq_open" / "NQ-open.dev.jsonl"
    rows, problems = read_all(plan_reads(nq, demo=False, overrides={"validation": f"{path}#explode=answer"}))
    assert not problems
    first_two = [(r.example_id, r.row["answer"]) for r in rows[:2]]
    assert first_two == [("validation:NQ-open.dev.jsonl:0#0", "14 December 1972 UTC"), ("validation:NQ-open.dev.jsonl:0#1", "December 1972")]
    answers = sum(len(__import__("json").loads(line)["answer"]) for line in path.read_text().splitlines())
    assert len(rows) == answers
    rows, _ = read_all(plan_reads(nq, demo=False, overrides={"validation": f"{path}#explode=answer,explode_keep=first"}))
    assert len(rows) == 40 and rows[0].row["answer"] == "14 December 1972 UTC" and rows[0].example_id == "validation:NQ-open.dev.jsonl:0"


def test_exploded_rows_come_back_on_the_second_pass(tmp_path, catalog):
    nq = catalog.tasks["natural_questions"]
    path = tmp_path / "nq.jsonl"
    shutil.copy(REALDATA / "nq_open" / "NQ-open.dev.jsonl", path)
    [shard] = plan_reads(nq, demo=False, overrides={"train": f"{path}#explode=answer"})
    rows = [r for r in read_shard(shard) if isinstance(r, SourceRow)]
    wanted = {rows[1].position: rows[1].ordinal}
    again = [r for r in read_rows_at(shard, wanted) if r.ordinal == rows[1].ordinal]
    assert again == [rows[1]]


def test_a_source_given_twice_for_one_split_is_an_error():
    from flanforge.beam_pipelines.config import parse_source_overrides

    with pytest.raises(ValueError, match=r"--source rte:train given twice"):
        parse_source_overrides(["rte=a.jsonl", "rte:train=b.jsonl"])
    assert parse_source_overrides(["rte=a.jsonl", "rte:validation=b.jsonl"]) == {"rte": {"train": "a.jsonl", "validation": "b.jsonl"}}


def test_unknown_source_options_are_named():
    from flanforge.beam_pipelines.sources import split_source_argument

    with pytest.raises(ValueError, match="unknown option 'headers'"):
        split_source_argument("x.tsv#headers=false")
    with pytest.raises(ValueError, match="format='xlsx'"):
        split_source_argument("x.tsv#format=xlsx")
    assert split_source_argument("x.tsv#delimiter=tab,quoting=true") == ("x.tsv", None, {"delimiter": "\t", "quoting": True})


PIQA_SPEC = """
name: piqa_aligned
cluster: commonsense
description: PIQA from its release files, a JSONL file with a line-aligned labels file.
license: AFL-3.0
metric: accuracy
source:
  kind: aligned
  splits:
    validation:
      "*": {jsonl}
      label: {labels}
answers:
  options: "[sol1, sol2]"
  label: label | int
templates:
  - id: piqa_aligned_01
    inputs: "Goal: {{{{ goal }}}}"
    targets: "{{{{ answer }}}}"
samples:
  - {{goal: "Open a jar.", sol1: "Twist the lid.", sol2: "Paint the lid.", label: "0"}}
"""


CELL = st.text(alphabet=st.sampled_from(list('ab 0"\t,\n\r;é') + ["\u00a0", "x"]), max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(CELL, min_size=1, max_size=4), min_size=1, max_size=40),
    kind=st.sampled_from(["csv", "tsv"]),
    damage=st.one_of(st.none(), st.integers(0, 10_000)),
    types=st.sampled_from([(), (("b", "int"),)]),
)
def test_fast_and_exact_csv_readers_agree_record_for_record(rows, kind, damage, types):
    """The pyarrow path hands over to the line reader at the first thing it cannot read exactly;
    whatever the file, the rows, problems, positions and texts are the line reader's."""
    import csv
    import io
    import tempfile

    from flanforge.beam_pipelines.sources import delimited
    from flanforge.beam_pipelines.sources.base import ReadOptions, SourceShard

    out = io.StringIO()
    writer = csv.writer(out, delimiter="," if kind == "csv" else "\t", quoting=csv.QUOTE_MINIMAL if kind == "csv" else csv.QUOTE_NONE,
                        escapechar=None if kind == "csv" else "\\", lineterminator="\n")
    writer.writerow(["a", "b", "c"])
    for r in rows:
        try:
            writer.writerow(r)
        except csv.Error:
            continue
    data = out.getvalue().encode("utf-8")
    if damage is not None:
        at = damage % len(data)
        data = data[:at] + b"\xff" + data[at:]  # one byte that is not UTF-8
    path = Path(tempfile.mkdtemp()) / f"f.{kind}"
    path.write_bytes(data)
    shard = SourceShard(task="t", split="train", kind=kind, location=str(path), start=0, end=-1, options=ReadOptions(types=types))
    old = delimited._FAST_BLOCK_BYTES
    delimited._FAST_BLOCK_BYTES = 64  # many small batches: the hand-over happens mid-file
    try:
        assert list(delimited.read(shard)) == list(delimited._read_exact(shard))
    finally:
        delimited._FAST_BLOCK_BYTES = old


def test_the_fast_reader_reads_clean_files_whole_and_hands_over_mid_file(tmp_path, monkeypatch):
    from flanforge.beam_pipelines.sources import delimited
    from flanforge.beam_pipelines.sources.base import ReadOptions, SourceShard

    monkeypatch.setattr(delimited, "_FAST_BLOCK_BYTES", 256)
    clean = tmp_path / "clean.csv"
    clean.write_text("a,b\n" + "".join(f'"x, {i}",{i}\n' for i in range(200)))
    shard = SourceShard(task="t", split="train", kind="csv", location=str(clean), start=0, end=-1, options=ReadOptions(types=(("b", "int"),)))
    assert list(delimited._read_fast(shard)) == list(delimited._read_exact(shard))  # no exception: read whole by pyarrow
    dirty = tmp_path / "dirty.csv"
    dirty.write_text("a,b\n" + "".join(f'"x, {i}",{i}\n' for i in range(150)) + "ragged,1,2\n" + "".join(f"y,{i}\n" for i in range(50)))
    shard = SourceShard(task="t", split="train", kind="csv", location=str(dirty), start=0, end=-1)
    fast = []
    with pytest.raises(ValueError):
        for raw in delimited._read_fast(shard):
            fast.append(raw)
    assert 0 < len(fast) < 150  # pyarrow read some blocks before it met the ragged row
    got = list(delimited.read(shard))
    assert got == list(delimited._read_exact(shard)) and len(got) == 201
    assert got[150].row is None and got[150].where == "line 152" and got[150].text == "ragged,1,2"


def test_a_header_less_file_in_a_glob_of_headed_files_is_refused(tmp_path, catalog):
    qqp = catalog.tasks["qqp"]
    lines = (REALDATA / "glue_qqp" / "train.tsv").read_bytes().splitlines(keepends=True)
    (tmp_path / "a.tsv").write_bytes(b"".join(lines))
    (tmp_path / "b.tsv").write_bytes(b"".join(lines[1:]))  # the same rows, no header line
    with pytest.raises(SourceError, match=r"b.tsv: its first line '133273 \| 213221.*is not the header of .*a.tsv"):
        plan_files(qqp, "train", str(tmp_path / "*.tsv"))
    (tmp_path / "b.tsv").write_bytes(b"".join(lines[:1] + lines[5:]))
    assert len(plan_files(qqp, "train", str(tmp_path / "*.tsv"))) == 2


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.csv.gz"])
def test_a_truncated_gzip_file_is_read_up_to_the_damage_and_the_rest_reported(tmp_path, catalog, name):
    import gzip

    rows = [{"sentence": f"row {i} " + "x" * (i % 50), "label": i % 2} for i in range(3000)]
    text = "".join(json.dumps(r) + "\n" for r in rows) if name.startswith("d.jsonl") else "sentence,label\n" + "".join(f"{r['sentence']},{r['label']}\n" for r in rows)
    data = gzip.compress(text.encode())
    path = tmp_path / name
    path.write_bytes(data[: len(data) * 2 // 3])  # the tail is gone
    got, problems = read_all(plan_files(catalog.tasks["sst2"], "train", str(path)))
    assert 0 < len(got) < 3000 and [r.row["sentence"] for r in got] == [r["sentence"] for r in rows[: len(got)]]
    assert len(problems) == 1 and problems[0].error.startswith("damaged file, rest not read: EOFError")
