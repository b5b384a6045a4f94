"""Near-duplicate removal and contamination: the slot text and its sketches, the Beam stages on
their own, and real builds with planted near-duplicates and planted contamination."""
from __future__ import annotations

import io
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.dataset as ds
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.contamination import FOUND, Contamination
from flanforge.beam_pipelines.example_sketches import FileSketch, Ragged
from flanforge.beam_pipelines.near_dedup import components
from flanforge.beam_pipelines.sketch import MinHasher, band_hashes, example_pieces, exact_hash, jaccard, ngrams, piece_words, shingles, slot_pieces
from flanforge.schemas.manifest import read_manifest

TEMPLATE = 'Premise: {{ premise }}\nHypothesis: {{ hypothesis }}\n\nIf the premise is true, must the hypothesis be true as well?'
A = "The committee approved the new budget after a long debate. Several members voted against it."
B = "A small boat drifted past the harbour lights at dawn. Nobody on the pier noticed it."


def rendered(premise: str, hypothesis: str = "It rained.") -> str:
    return f"Premise: {premise}\nHypothesis: {hypothesis}\n\nIf the premise is true, must the hypothesis be true as well?"


def slots(premise: str) -> np.ndarray:
    return shingles(example_pieces(rendered(premise), "yes", ["yes", "no"], TEMPLATE, "{{ answer }}"), 2)


def test_slot_text_is_the_rendering_without_the_templates_words_options_or_label():
    text = rendered(A) + "\n\nOPTIONS:\n- yes\n- no"
    assert example_pieces(text, "yes", ["yes", "no"], TEMPLATE, "{{ answer }}") == [A, "It rained."]
    # A generative target is content and stays; a segment in a branch that did not render is skipped.
    assert slot_pieces("Title: Flood", ("Heading:", "Title:")) == ["Flood"]
    assert example_pieces("Summarise: x y", "a b", [], "Summarise: {{ t }}", "{{ s }}") == ["x y", "a b"]


def test_distinct_examples_through_one_template_are_not_similar():
    assert jaccard(slots(A), slots(B)) < 0.1
    # the rendered texts share the template's twenty words, their slots share none
    assert jaccard(shingles([rendered(A)], 2), shingles([rendered(B)], 2)) > 0.3


@pytest.mark.parametrize(
    "variant",
    [
        A.upper(),
        A.replace(".", " !"),
        "  ".join(A.split()),
        "Several members voted against it. The committee approved the new budget after a long debate.",
        A.replace("long", "lengthy"),
        A.replace("budget", "budget finally"),
    ],
    ids=["case", "punctuation", "whitespace", "reordered", "one word changed", "one word inserted"],
)
def test_small_edits_case_punctuation_whitespace_and_reordering_stay_similar(variant):
    assert jaccard(slots(A), slots(variant)) >= 0.7


def test_minhash_estimates_jaccard_and_bands_collide_for_equal_sets():
    hasher = MinHasher(120, seed=7)
    a, b, c = slots(A), slots(A.replace("long", "lengthy")), slots(B)
    sig = hasher.signatures([a, b, c, a, np.zeros(0, np.uint32)])
    assert abs((sig[0] == sig[1]).mean() - jaccard(a, b)) < 0.15
    assert (sig[0] == sig[2]).mean() < 0.1
    bands = band_hashes(sig, 20, 6)
    assert (bands[0] == bands[3]).all() and not (bands[0] == bands[2]).any()
    assert (sig[4] == 0xFFFFFFFF).all()  # no words: never a candidate


def test_components_keep_the_smallest_example_of_each_group():
    pairs = [(("t", "3"), ("t", "1")), (("t", "1"), ("t", "2")), (("u", "9"), ("t", "8"))]
    assert components(pairs) == {("t", "2"): ("t", "1"), ("t", "3"): ("t", "1"), ("u", "9"): ("t", "8")}


def sketch(path: str, split: str, ids: list[str], texts: list[str]) -> FileSketch:
    return FileSketch(
        path, "rte", split, ids, exact=np.array([exact_hash(piece_words([t])) for t in texts], dtype=np.uint64),
        ngrams=Ragged([ngrams(piece_words([t]), 5) for t in texts], np.uint64),
    )


@pytest.mark.parametrize("use_join", [False, True], ids=["side input", "join"])
def test_contamination_index_as_side_input_and_as_join_finds_the_same(use_join):
    long = "one two three four five six seven eight"
    train = sketch("a.arrow", "train", ["t1", "t2", "t3", "t4"], [A, B.upper(), f"{long} nine", "unrelated short text"])
    # A top-up file repeats examples of its shard: t2 again (found, not counted twice) and t5, rendered only there.
    top_up = sketch("a-top-up.arrow", "train", ["t2", "t5"], [B, f"{long} ten"])
    evaluation = sketch("b.arrow", "validation", ["v1", "v2"], [B, f"zero {long}"])
    external = sketch("ext.jsonl", "external", ["0"], ["nothing in common here at all today"])
    with TestPipeline() as p:
        out = (p | "Own" >> beam.Create([train, top_up, evaluation]), p | "External" >> beam.Create([external])) | Contamination(use_join)
        found = out[FOUND] | beam.Distinct()
        assert_that(found, equal_to([("rte", "t2"), ("rte", "t3"), ("rte", "t5")]), label="found")
        assert_that(out["counts"] | beam.CombinePerKey(sum), equal_to([
            (("rte", "contamination@checked"), 4), (("rte", "contamination@exact"), 1),
            (("rte", "contamination@ngram"), 2), (("rte", "contamination@contaminated"), 2),
        ]), label="counts")


# -- real builds --------------------------------------------------------------------------------

REAL_RTE = Path(__file__).resolve().parents[1] / "data" / "realdata" / "glue_rte"


def rte_rows() -> list[dict]:
    """60 real, distinct RTE pairs (GLUE train and dev excerpts)."""
    rows = []
    for name in ("train.tsv", "dev.tsv"):
        for line in (REAL_RTE / name).read_text(encoding="utf-8").splitlines()[1:]:
            _, premise, hypothesis, label = line.split("\t")
            rows.append({"idx": len(rows), "premise": premise, "hypothesis": hypothesis, "label": int(label != "entailment")})
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def reorder(text: str) -> str:
    first, _, rest = text.partition(". ")
    return f"{rest} {first}." if rest else text.upper()


EDITS = [str.upper, lambda s: s.replace(",", " ;").replace(".", "!"), reorder, lambda s: s.replace(" ", "   ")]


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, Path]:
    """60 real rte rows, 8 edited copies of rows 0-7 (ids 900.., so the originals sort first and
    win), a validation split holding 3 train rows verbatim (20-22) and 5 of its own, and an
    external set quoting train row 30's premise."""
    rows = rte_rows()
    assert len(rows) == 60
    copies = [dict(rows[i], idx=900 + i, premise=EDITS[i % len(EDITS)](rows[i]["premise"])) for i in range(8)]
    write_rows(tmp_path / "train.jsonl", rows + copies)
    own = [{"idx": 600 + i, "premise": f"Validation premise number {i} about something else entirely.", "hypothesis": "It is.", "label": 0} for i in range(5)]
    write_rows(tmp_path / "validation.jsonl", [dict(rows[i], idx=500 + i) for i in (20, 21, 22)] + own)
    write_rows(tmp_path / "external.jsonl", [{"question": rows[30]["premise"]}])
    return {"train": tmp_path / "train.jsonl", "validation": tmp_path / "validation.jsonl", "external": tmp_path / "external.jsonl"}


def build(out: Path, planted: dict[str, Path], *extra: str) -> None:
    argv = ["--tasks", "rte", "--source", f"rte={planted['train']}", "--source", f"rte:validation={planted['validation']}",
            "--output", str(out), "--no-progress", "--formats", "parquet", *extra]
    assert run_build_cli(argv, io.StringIO()) == 0


def kept(out: Path, split: str = "train") -> set[str]:
    table = ds.dataset(out / "parquet" / split, format="parquet").to_table(columns=["example_id"])
    return set(table.column("example_id").to_pylist())


def test_planted_near_duplicates_are_removed_and_counted_and_distinct_rows_kept(tmp_path, planted):
    build(tmp_path / "out", planted, "--near-dedup")
    m = read_manifest(str(tmp_path / "out"))
    counts = m.tasks["rte"].counts
    templates = m.tasks["rte"].templates
    ids = kept(tmp_path / "out")
    assert {f"train:{900 + i}" for i in range(8)}.isdisjoint(ids)  # the copies sort after their originals
    assert {f"train:{i}" for i in range(60)} <= ids  # every distinct row kept
    assert counts["near_duplicates"] + counts["duplicates"] == 8 * templates
    assert m.tasks["rte"].written_by_split["train"] == 60 * templates
    assert m.config["near_dedup"] and m.config["near_dedup_ngram"] == 2
    [sample] = m.near_duplicate_samples
    pairs = [json.loads(line) for line in (tmp_path / "out" / sample.path).read_text().splitlines()]
    assert sample.split == "train" and {p["b"][1] for p in pairs} == {f"train:{900 + i}" for i in range(8)}
    assert all(p["jaccard"] >= 0.7 and p["text_a"] and p["text_b"] for p in pairs)
    # validation is its own dedup group: its copies of train rows stay
    assert len(kept(tmp_path / "out", "validation")) == 8


def test_contamination_is_reported_by_default_and_removed_on_request(tmp_path, planted):
    build(tmp_path / "report", planted)
    report = read_manifest(str(tmp_path / "report")).contamination
    assert report["ngram_words"] == 13 and not report["decontaminated"]
    assert report["tasks"]["rte"] == {"checked": 68, "exact": 3, "ngram": 3, "contaminated": 3}
    assert read_manifest(str(tmp_path / "report")).tasks["rte"].counts["contaminated"] == 0

    build(tmp_path / "clean", planted, "--decontaminate", "--decontaminate-against", f"{planted['external']}#field=question")
    m = read_manifest(str(tmp_path / "clean"))
    assert m.contamination["tasks"]["rte"]["contaminated"] == 4  # 20, 21, 22 and the external one (30)
    assert m.tasks["rte"].counts["contaminated"] == 4 * m.tasks["rte"].templates
    assert {"train:20", "train:21", "train:22", "train:30"}.isdisjoint(kept(tmp_path / "clean"))
    assert len(kept(tmp_path / "clean", "validation")) == 8  # evaluation rows are never removed


def test_an_external_set_without_its_text_field_is_a_clear_error(tmp_path, planted, capsys):
    err = io.StringIO()
    argv = ["--tasks", "rte", "--source", f"rte={planted['train']}", "--output", str(tmp_path / "o"), "--no-progress",
            "--decontaminate-against", str(planted["external"])]
    assert run_build_cli(argv, err) != 0
    message = capsys.readouterr().err
    assert "external.jsonl" in message and "no text field 'text'" in message


def test_near_dedup_inside_a_capped_build_still_fills_the_cap(tmp_path, planted):
    build(tmp_path / "capped", planted, "--near-dedup", "--max-examples-per-task", "300")
    counts = read_manifest(str(tmp_path / "capped")).tasks["rte"].counts
    written_train = read_manifest(str(tmp_path / "capped")).tasks["rte"].written_by_split["train"]
    assert written_train == 300
    assert counts["template_applications"] == sum(counts[k] for k in ("written", "duplicates", "near_duplicates", "contaminated", "capped", "failed", "skipped"))


def test_a_rebuild_from_the_render_cache_finds_the_same(tmp_path, planted):
    """Fresh renders are sketched as they spill; cached ones from their spill files: same decisions."""
    out = tmp_path / "out"
    build(out, planted, "--near-dedup")
    first = read_manifest(str(out))
    build(out, planted, "--near-dedup")
    again = read_manifest(str(out))
    assert again.tasks["rte"].from_cache
    assert again.tasks["rte"].counts == first.tasks["rte"].counts
    assert again.contamination == first.contamination
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in first.shards]
