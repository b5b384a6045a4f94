"""The flan2021 recipe, held-out clusters, mixing weights and derived no-options variants."""
from __future__ import annotations

import io
import re

import pyarrow.dataset as ds
import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import SpecError, load_catalog, load_recipe
from flanforge.schemas.manifest import accounting_errors, read_manifest


def build(*args: str) -> int:
    return run_build_cli(list(args), io.StringIO())


def rows(out, split):
    table = ds.dataset(str(out / "parquet"), format="parquet").to_table()
    return [r for r in table.to_pylist() if r["split"] == split]


def test_flan2021_recipe_with_nli_held_out(tmp_path, templates_dir):
    out = tmp_path / "out"
    assert build("--recipe", "flan2021", "--holdout-clusters", "nli", "--demo", "--output", str(out), "--templates", str(templates_dir)) == 0
    m = read_manifest(str(out))
    assert m.config["recipe"] == "flan2021@1" and m.config["max_examples_per_task"] == 30000
    assert m.holdout_clusters == ("nli",) and m.excluded_clusters == ("cot", "paraphrase")  # clusters.yaml overlaps
    assert accounting_errors(m.tasks) == []
    # the held-out task is only in eval_zeroshot, through every template, options shown
    assert {s.split for s in m.shards if s.cluster == "nli"} == {"eval_zeroshot"}
    assert {s.split for s in m.shards if s.cluster == "summarization"} == {"train"}
    evaluation = rows(out, "eval_zeroshot")
    assert {r["template_id"] for r in evaluation} == {f"rte_{i:02d}" for i in range(1, 11)}
    non_inverted = [r for r in evaluation if r["template_type"] != "inverted"]
    assert non_inverted and all(r["options"] == ["yes", "no"] and "OPTIONS:" in r["inputs"] for r in non_inverted)
    # mixing weights: min(train examples, 3000); held-out tasks have no train examples
    assert m.tasks["echo_title"].mixing_weight == m.tasks["echo_title"].written_by_split["train"] > 0
    assert m.tasks["rte"].mixing_weight == 0


def test_flags_override_the_recipe_and_rate_cap_applies(tmp_path, templates_dir):
    out = tmp_path / "out"
    assert build("--recipe", "flan2021", "--max-examples-per-task", "4", "--mixing-rate-cap", "3", "--demo", "--output", str(out), "--templates", str(templates_dir)) == 0
    m = read_manifest(str(out))
    assert m.config["max_examples_per_task"] == 4
    assert m.tasks["rte"].written_by_split["train"] == 4 and m.tasks["rte"].counts["capped"] > 0
    assert m.tasks["rte"].mixing_weight == 3


def test_options_variants_both_derives_no_options_renders(tmp_path, templates_dir):
    out = tmp_path / "out"
    assert build("--options-variants", "both", "--demo", "--tasks", "rte", "--output", str(out), "--templates", str(templates_dir)) == 0
    m = read_manifest(str(out))
    # 10 templates; 7 show options and are not inverted, so each row gets 17 renders
    assert m.tasks["rte"].counts["template_applications"] == 5 * 17
    train = rows(out, "train")
    rte_01 = sorted((r for r in train if r["template_id"] == "rte_01"), key=lambda r: (r["example_id"], r["template_type"]))
    shown, hidden = rte_01[0], rte_01[1]
    assert (shown["template_type"], hidden["template_type"]) == ("zero_shot", "zero_shot_no_options")
    assert shown["inputs"].startswith(hidden["inputs"]) and "OPTIONS:" not in hidden["inputs"]
    assert hidden["options"] == ["yes", "no"]


def test_holdout_overlaps_are_data():
    catalog = load_catalog()
    assert catalog.excluded_by_holdout(["commonsense"]) == {"commonsense", "reading_comprehension_commonsense"}
    assert catalog.excluded_by_holdout(["reading_comprehension_commonsense"]) == {
        "reading_comprehension_commonsense", "reading_comprehension", "commonsense"}
    with pytest.raises(SpecError, match="unknown cluster"):
        catalog.excluded_by_holdout(["astrology"])


def test_unknown_recipe_and_missing_eval_split(tmp_path, templates_dir, capsys):
    with pytest.raises(SpecError, match="known recipes: flan2021"):
        load_recipe("flan2099")
    train_only = tmp_path / "t.jsonl"
    train_only.write_text('{"premise": "a", "hypothesis": "b", "label": 0}\n')
    assert build("--holdout-clusters", "nli", "--source", f"rte={train_only}", "--output", str(tmp_path / "o"), "--templates", str(templates_dir)) == 2
    assert "task rte: no validation split to read (has train); give one with --source rte:validation=PATH" in capsys.readouterr().err


def test_few_shot_variants_use_other_train_rows_and_skip_eval(tmp_path, templates_dir):
    import json

    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(json.dumps({"premise": f"Unique premise {i}.", "hypothesis": "H.", "label": i % 2, "idx": i}) + "\n" for i in range(12)))
    val.write_text(json.dumps({"premise": "Validation premise.", "hypothesis": "H.", "label": 0, "idx": 0}) + "\n")
    out = tmp_path / "out"
    assert build("--few-shot", "2", "--source", f"rte={train}", "--source", f"rte:validation={val}", "--output", str(out), "--templates", str(templates_dir)) == 0
    m = read_manifest(str(out))
    assert m.tasks["rte"].counts["template_applications"] == 12 * 10 * 2 + 10
    assert accounting_errors(m.tasks) == []
    few = [r for r in rows(out, "train") if r["template_type"].startswith("few_shot")]
    assert len(few) == 120 and {r["template_type"] for r in few} == {"few_shot", "few_shot_no_options", "few_shot_inverted"}
    for r in few:
        own = r["example_id"].split(":")[1]
        mentioned = re.findall(r"Unique premise (\d+)", r["inputs"])
        assert mentioned.count(own) <= 1  # the row never serves as its own exemplar
        assert len(set(mentioned) - {own}) == 2  # K = 2 exemplars from other train rows
    assert all(r["template_type"].startswith(("zero_shot", "inverted")) for r in rows(out, "validation"))
