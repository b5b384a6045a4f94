"""The `niv2` source kind and the bundled NIv2 spec, on real Super-NaturalInstructions task files
(tests/data/niv2, see its README): rows and their task-level fields, the label-set rule, several
acceptable outputs, bad files, the templates' text on a real instance, and a whole build."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import load_catalog
from flanforge.beam_pipelines.render import CompiledTask
from flanforge.beam_pipelines.sources import ReadProblem, SourceError, SourceRow, plan_reads, read_shard, tasks_per_file
from flanforge.beam_pipelines.sources import niv2
from flanforge.schemas.manifest import accounting_errors, read_manifest

DATA = Path(__file__).resolve().parents[1] / "data" / "niv2"
FOOD = DATA / "task1193_food_course_classification.json"  # 24 instances, labels main course / dessert / snack
KITCHEN = DATA / "task1158_bard_analogical_reasoning_manipulating_items.json"  # 12 instances, the first with 2 outputs
REPEAT = DATA / "task062_bigbench_repeat_copy_logic.json"  # the whole file: 29 free-text instances


@pytest.fixture(scope="module")
def spec():
    return load_catalog().tasks["niv2"]


def read(spec, source: str) -> tuple[list[SourceRow], list[ReadProblem]]:
    items = [item for shard in plan_reads(spec, demo=False, overrides={"train": source}) for item in read_shard(shard)]
    return [i for i in items if isinstance(i, SourceRow)], [i for i in items if isinstance(i, ReadProblem)]


def test_instances_are_rows_carrying_the_task_fields(spec):
    shards = plan_reads(spec, demo=False, overrides={"train": str(FOOD)})
    assert [s.kind for s in shards] == ["niv2"]  # a .json file given to an niv2 task is not read as JSON Lines
    rows, problems = read(spec, str(FOOD))
    raw = json.loads(FOOD.read_text(encoding="utf-8"))
    assert problems == [] and len(rows) == len(raw["Instances"]) == 24
    first = rows[0]
    assert first.example_id == "train:task1193-66085a70a5a140cbbecac2e6284fad0a#0"
    assert first.row["input"] == "Kolim Jawla" and first.row["output"] == "main course"  # exploded: one output per row
    assert first.row["task_name"] == "task1193_food_course_classification"
    assert first.row["definition"] == raw["Definition"][0]
    assert first.row["positive_examples"] == [
        {"input": "Sev tameta", "output": "main course", "explanation": "Sev tameta is a main course dish."},
        {"input": "Uttapam", "output": "snack", "explanation": "Uttapam is a snack dish."},
    ]
    assert first.row["label_set"] == ["dessert", "main course", "snack"]
    assert first.row["categories"] == ["Misc."] and first.row["source"] == ["indian_food_101"] and first.row["domains"] == ["Food"]
    assert first.row["input_language"] == first.row["output_language"] == first.row["instruction_language"] == ["English"]
    assert first.row["instance_license"] == raw["Instance License"]
    assert "negative_examples" not in first.row
    assert [r.row["id"] for r in rows] == [x["id"] for x in raw["Instances"]]


def test_several_acceptable_outputs_give_a_row_each_or_the_first(spec):
    rows, _ = read(spec, str(KITCHEN))
    assert len(rows) == 13  # 12 instances, the first with two outputs
    assert [(r.example_id, r.row["output"]) for r in rows[:3]] == [
        ("train:task1158-4c9c4bc0659248dabee363826e4afd6d#0", "pour"),
        ("train:task1158-4c9c4bc0659248dabee363826e4afd6d#1", "squeeze"),
        ("train:task1158-679e96f596054b25986fb423fd9e40a7#0", "peel"),
    ]
    assert rows[0].row["label_set"] == []  # an instance with two outputs: not a classification task
    first_only, _ = read(spec, f"{KITCHEN}#explode=output,explode_keep=first")
    assert len(first_only) == 12
    assert (first_only[0].example_id, first_only[0].row["output"]) == ("train:task1158-4c9c4bc0659248dabee363826e4afd6d", "pour")


def test_label_set_rule():
    assert niv2.label_set([["A"], ["B"], ["A"], ["B"]]) == ["A", "B"]
    assert niv2.label_set([["b"], ["a"], ["c"]] * 2) == ["a", "b", "c"]  # sorted
    assert niv2.label_set([["A"], ["B"], ["A"]]) == []  # fewer than two instances per label
    assert niv2.label_set([["A", "B"], ["A"], ["B"], ["A"]]) == []  # an instance with several outputs
    assert niv2.label_set([["A"]] * 8) == []  # one distinct output is no choice
    eleven = [[str(i)] for i in range(11)] * 3
    assert niv2.label_set(eleven) == [] and niv2.label_set(eleven[:10] * 3)  # at most LABEL_SET_MAX labels
    assert niv2.LABEL_SET_MAX == 10


def render_all(spec, row: dict) -> dict[str, tuple[str, str]]:
    task = CompiledTask(spec)
    variables = task.prepare(row)
    return {
        t.id: (r.inputs, r.targets)
        for i, t in enumerate(spec.templates)
        if task.applies(variables, i) and (r := task.render(variables, i)).template_type == "zero_shot"
    }


def test_templates_render_a_real_instance(spec):
    rows, _ = read(spec, str(FOOD))
    out = render_all(spec, rows[0].row)
    definition = (
        'In this task, you are given the name of an Indian food dish. You need to classify the dish as a "main course", '
        '"dessert" or "snack".'
    )
    assert out["niv2_01"] == (f"{definition}\n\nInput: Kolim Jawla\nOutput:", "main course")
    assert out["niv2_03"][0] == (
        f"{definition}\n\nExample input: Sev tameta\nExample output: main course\n\n"
        "Example input: Uttapam\nExample output: snack\n\nNow the same for this input.\nInput: Kolim Jawla\nOutput:"
    )
    assert out["niv2_04"][0] == (
        f"{definition}\n\nExample input: Sev tameta\nExample output: main course\nWhy: Sev tameta is a main course dish.\n\n"
        "Example input: Uttapam\nExample output: snack\nWhy: Uttapam is a snack dish.\n\n"
        "Now the same for this input.\nInput: Kolim Jawla\nOutput:"
    )
    assert out["niv2_05"] == (f"{definition}\n\nKolim Jawla\n\nOPTIONS:\n- dessert\n- main course\n- snack", "main course")
    assert out["niv2_06"][0].endswith("Kolim Jawla\nAnswer (one of: dessert, main course, snack):")
    assert {t for t, (_, target) in out.items() if target != "main course"} == set()


def test_options_templates_skip_tasks_without_a_label_set(spec):
    rows, _ = read(spec, str(REPEAT))
    assert len(rows) == 29 and rows[0].row["label_set"] == []
    out = render_all(spec, rows[0].row)
    assert sorted(out) == ["niv2_01", "niv2_02", "niv2_03", "niv2_04"]
    assert out["niv2_01"][1] == "all the world all the world is a stage " * 3 + "all the world"


def test_the_sample_rows_render_before_explode(spec):
    """validate and preview see the reader's rows as the spec keeps them (output still a list)."""
    assert isinstance(spec.samples[3]["output"], list) and len(spec.samples[3]["output"]) == 2
    assert render_all(spec, spec.samples[3])["niv2_01"][1] == "pour"


def test_a_file_that_is_not_a_task_file_is_refused_naming_it(spec, tmp_path):
    array = tmp_path / "list.json"
    array.write_text("[1, 2]")
    with pytest.raises(SourceError, match=r"task niv2 split train: .*list\.json is not an NIv2 task file"):
        plan_reads(spec, demo=False, overrides={"train": str(array)})
    cut = tmp_path / "cut.json"
    cut.write_bytes(FOOD.read_bytes()[:3000])
    _, problems = read(spec, str(cut))
    assert len(problems) == 1 and problems[0].where == "cut.json"
    assert problems[0].error.startswith("not an NIv2 task file: ")
    missing = tmp_path / "no_instances.json"
    missing.write_text(json.dumps({"Definition": ["Do it."], "Positive Examples": []}))
    _, problems = read(spec, str(missing))
    assert [(p.where, p.error) for p in problems] == [
        ("no_instances.json", "not an NIv2 task file: no 'Instances' key (has 'Definition', 'Positive Examples')")
    ]
    # its metadata is nothing (the dead letter above is what the build reports), a real file's is its own
    assert niv2.task_file_metadata(str(cut)) == {} and niv2.task_file_metadata(str(missing)) == {}
    assert niv2.task_file_metadata(str(KITCHEN))["niv2"]["task_name"] == KITCHEN.stem


def test_a_bad_instance_is_a_dead_letter_the_others_are_read(spec, tmp_path):
    raw = json.loads(FOOD.read_text(encoding="utf-8"))
    raw["Instances"][1]["output"] = "main course"  # a string, not a list
    raw["Instances"][2]["output"] = []
    path = tmp_path / "task9_bad.json"
    path.write_text(json.dumps(raw))
    rows, problems = read(spec, str(path))
    assert len(rows) == 22
    assert [(p.where, p.error) for p in problems] == [
        ("task9_bad.json Instances[1]", "instance `output` must be a list of strings"),
        ("task9_bad.json Instances[2]", "instance `output` is empty: no acceptable output"),
    ]
    assert '"input": "Paneer tikka masala"' in problems[0].text


def test_a_file_over_the_size_limit_is_refused_naming_it(spec, monkeypatch):
    monkeypatch.setattr(niv2, "MAX_TASK_FILE_BYTES", 1000)
    with pytest.raises(SourceError, match=r"task1193_food_course_classification\.json: 5904 bytes, larger than"):
        plan_reads(spec, demo=False, overrides={"train": str(FOOD)})


def test_each_task_file_is_a_task_of_its_own_in_every_split(spec, tmp_path):
    (tmp_path / "valid").mkdir()
    (tmp_path / "valid" / "Task1193-Food.json").write_bytes(FOOD.read_bytes())
    shards = plan_reads(spec, demo=False, overrides={"train": f"{DATA}/task1*.json", "validation": str(tmp_path / "valid" / "*.json")})
    tasks = tasks_per_file(spec, shards)
    assert {t: sorted(s.split for s in own) for t, own in tasks.items()} == {
        "niv2_task1193_food_course_classification": ["train"], "niv2_task1158_bard_analogical_reasoning_manipulating_items": ["train"],
        "niv2_task1193_food": ["validation"],  # named from the file: lowercase letters, digits and _
    }
    assert all(s.task == t for t, own in tasks.items() for s in own)
    # the spec's sample rows (validate, preview, --demo) stay one task
    assert list(tasks_per_file(spec, plan_reads(spec, demo=True, overrides={}))) == ["niv2"]


def test_tasks_picks_single_task_files_by_name_or_pattern_and_refuses_what_matches_none():
    from flanforge.beam_pipelines.build import plan_build
    from flanforge.beam_pipelines.catalog import SpecError
    from flanforge.beam_pipelines.config import BuildConfig

    def planned(*names: str) -> list[str]:
        config = BuildConfig(output="unused", tasks=names, demo=True, sources={"niv2": {"train": f"{DATA}/*.json"}})
        return sorted(t.name for t in plan_build(config).tasks)

    food, kitchen = "niv2_task1193_food_course_classification", "niv2_task1158_bard_analogical_reasoning_manipulating_items"
    assert planned(food, "rte") == [food, "rte"]
    assert planned("niv2_task11*") == [kitchen, food]
    assert len(planned("niv2")) == len(list(DATA.glob("*.json"))) == len(planned("niv2", food))  # the whole spec wins
    with pytest.raises(SpecError, match=r"--tasks niv2_task9: no file of niv2's source is that task \(its files give \d+ task"):
        planned("niv2_task9", food)
    with pytest.raises(SpecError, match="unknown task.*: nvi2_task1"):
        planned("nvi2_task1")


def test_two_files_of_one_split_named_as_one_task_are_refused(spec, tmp_path):
    for name in ("Task-7.json", "task_7.json"):
        (tmp_path / name).write_bytes(FOOD.read_bytes())
    with pytest.raises(SourceError, match=r"Task-7\.json and .*task_7\.json would both be task niv2_task_7"):
        tasks_per_file(spec, plan_reads(spec, demo=False, overrides={"train": str(tmp_path / "*.json")}))


def test_the_bundled_spec_builds_a_task_per_real_task_file_with_balanced_accounting(tmp_path):
    out = tmp_path / "out"
    err = io.StringIO()
    code = run_build_cli(["--output", str(out), "--tasks", "niv2", "--source", f"niv2={DATA}/*.json", "--no-progress"], io.StringIO(), err)
    assert code == 0, err.getvalue()
    m = read_manifest(str(out))
    assert accounting_errors(m.tasks) == []
    # one task per task file, as Flan 2022 mixed NIv2: each its own counts and mixing weight
    rows = {"niv2_task1193_food_course_classification": 24, "niv2_task1158_bard_analogical_reasoning_manipulating_items": 13,
            "niv2_task062_bigbench_repeat_copy_logic": 29}
    assert set(m.tasks) == set(rows)
    for task, n in rows.items():
        counts = m.tasks[task].counts
        assert counts["read"] == n and counts["read_errors"] == 0 and counts["failed"] == 0
        assert counts["template_applications"] == n * 6
        assert m.tasks[task].collection == "niv2" and m.tasks[task].mixing_weight == m.tasks[task].written_by_split["train"]
    # each task's metadata in the manifest, from its file
    raw = json.loads(FOOD.read_text(encoding="utf-8"))
    food = m.tasks["niv2_task1193_food_course_classification"].metadata["niv2"]
    assert food["task_name"] == FOOD.stem and food["categories"] == raw["Categories"] and food["source"] == raw["Source"]
    assert food["input_language"] == raw["Input_language"] and food["instance_license"] == raw["Instance License"]
    # the two options templates skip the tasks without a label set
    assert {t: e.counts["skipped"] for t, e in m.tasks.items()} == {t: 0 if "food" in t else 2 * n for t, n in rows.items()}
    table = pq.read_table(out / "parquet").to_pylist()
    assert {r["cluster"] for r in table} == {"niv2"} and len(table) == sum(e.counts["written"] for e in m.tasks.values())
    # every record is its instance's task file's (an instance id starts with the task's number)
    assert all(r["task"].startswith("niv2_" + r["example_id"].split(":")[1].split("-")[0] + "_") for r in table)
    options = [r for r in table if r["template_id"] == "niv2_05"]
    assert len(options) == 24 and all(r["example_id"].startswith("train:task1193-") for r in options)
    assert {r["targets"] for r in options} == {"main course", "dessert", "snack"}
