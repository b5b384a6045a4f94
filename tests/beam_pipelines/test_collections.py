"""Collections (docs/COLLECTIONS.md): a task's collection (spec key, else by origin), the record
field, a recipe's per-collection weights and rate caps, the manifest's per-task rates and
per-collection summary, the trainer mixing as the build recorded, dedup across collections, and
the flan2022-lite recipe. Builds are of a few rows: the FLAN and P3 versions of RTE and SST-2 on
the hub-layout rows in tests/data/promptsource/rows/."""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.catalog import SpecError, load_catalog, load_recipe, parse_task_spec
from flanforge.beam_pipelines.sources import example_to_row
from flanforge.schemas.manifest import mixing_rates, read_manifest
from flanforge.schemas.tfexample import read_tfrecords
from flanforge.training.data import manifest_collections, manifest_mixing_weights, mixture_weights, task_sizes, train_shards
from flanforge.training.seqio_tasks import plan_corpus

DATA = Path(__file__).resolve().parents[1] / "data" / "promptsource"
ROWS = DATA / "rows"
P3 = str(DATA / "templates")
TASKS = {"rte": "super_glue_rte", "p3_super_glue_rte": "super_glue_rte", "sst2": "glue_sst2", "p3_glue_sst2": "glue_sst2"}


def build(out: Path, *args: str, tasks: dict[str, str] = TASKS) -> tuple[int, str]:
    """Build `tasks` (task -> its rows in ROWS, or a path, or None: its demo samples)."""
    err = io.StringIO()
    sources = [a for task, rows in tasks.items() if rows for a in ("--source", f"{task}={rows if '/' in rows else ROWS / (rows + '.jsonl')}")]
    code = run_build_cli([*args, *sources, "--tasks", ",".join(tasks), "--output", str(out), "--no-progress"], io.StringIO(), err)
    return code, err.getvalue()


def recipe(tmp_path: Path, collections: str, build: str = "template_mode: all") -> str:
    path = tmp_path / "mix.yaml"
    path.write_text(f"name: mix\nversion: 3\nbuild:\n  {build}\ncollections:\n" + textwrap.indent(textwrap.dedent(collections), "  "))
    return str(path)


@pytest.fixture(scope="module")
def weighted(tmp_path_factory) -> Path:
    """FLAN's and P3's RTE and SST-2, flan2021 weighed 3 and p3 1, P3 tasks' mixing weights capped at 5."""
    tmp = tmp_path_factory.mktemp("weighted")
    mix = recipe(tmp, "flan2021: {weight: 3}\np3: {weight: 1, mixing_rate_cap: 5}\ncot: {weight: 2}\n")
    code, err = build(tmp / "out", "--recipe", mix, "--templates", P3)
    assert code == 0, err
    return tmp / "out"


# --- a task's collection ------------------------------------------------------------------------


def test_collection_defaults_by_origin_and_the_spec_key_wins():
    catalog = load_catalog(P3)  # the bundled catalog with promptsource's files read in place
    got = {n: catalog.tasks[n].collection for n in ("rte", "sst2", "niv2", "aqua_rat", "esnli", "p3_super_glue_rte")}
    assert got == {"rte": "flan2021", "sst2": "flan2021", "niv2": "niv2", "aqua_rat": "cot", "esnli": "cot", "p3_super_glue_rte": "p3"}
    data = {
        "name": "t", "cluster": "nli", "description": "d", "license": "l", "metric": "exact_match",
        "source": {"kind": "jsonl", "splits": {"train": "x.jsonl"}}, "samples": [{"a": "x"}],
        "templates": [{"id": "t_01", "inputs": "{{ a }}", "targets": "{{ a }}"}],
    }
    assert parse_task_spec(data, "t.yaml").collection == "flan2021"
    assert parse_task_spec({**data, "collection": "dialog"}, "t.yaml").collection == "dialog"
    with pytest.raises(SpecError, match=r"t\.yaml: field collection: 'Dialog!' does not match"):
        parse_task_spec({**data, "collection": "Dialog!"}, "t.yaml")


def test_every_record_carries_its_tasks_collection_in_parquet_and_tfrecord(weighted):
    table = pq.read_table(weighted / "parquet", columns=["task", "collection"], partitioning=None).to_pylist()
    assert {(r["task"], r["collection"]) for r in table} == {
        ("rte", "flan2021"), ("sst2", "flan2021"), ("p3_super_glue_rte", "p3"), ("p3_glue_sst2", "p3"),
    }
    tf_rows = []
    for path in sorted(weighted.glob("tfrecord/*/*/*.tfrecord")):
        with open(path, "rb") as f:
            tf_rows += [example_to_row(r) for r in read_tfrecords(f)]
    assert len(tf_rows) == len(table) and {(r["task"], r["collection"]) for r in tf_rows} == {(r["task"], r["collection"]) for r in table}


# --- recipes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("collections, problem", [
    ("p3: {weight: 0.3, max_examples_per_task: many}\n", "p3: max_examples_per_task: 'many': expected what `build: max_examples_per_task:` takes"),
    ("p3: {weight: 0.3, few_shot: yes}\n", "p3: few_shot: True: expected what `build: few_shot:` takes"),
    ("p3: {weight: 0.3, rate: 1}\n", "p3: rate: unknown key"),
    ("p3: {weight: 0}\n", "p3: weight: 0: a positive number"),
    ("p3: {weight: yes}\n", "p3: weight: True: a positive number"),
    ("p3: {weight: 1, mixing_rate_cap: 0.5}\n", "p3: mixing_rate_cap: 0.5: a whole number"),
    ("P3: {weight: 1}\n", "P3: not a collection name"),
])
def test_a_recipe_with_a_bad_collection_entry_is_refused_naming_file_and_collection(tmp_path, collections, problem):
    path = recipe(tmp_path, collections)
    with pytest.raises(SpecError) as e:
        load_recipe(path)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith(f"{path}: collections: {problem}")


def test_a_task_of_a_collection_the_recipe_does_not_weigh_stops_the_build_before_any_work(tmp_path):
    code, err = build(tmp_path / "out", "--recipe", recipe(tmp_path, "flan2021: {weight: 1}\n"), "--templates", P3)
    assert code == 2
    assert "task(s) of a collection it gives no weight: p3_glue_sst2 (p3), p3_super_glue_rte (p3)" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_collection_sets_its_own_caps_few_shot_and_options_variants(tmp_path):
    """p3 built as the recipe's `build:` says (8 examples per task) plus 1-shot variants; flan2021
    with its own settings: uncapped (`null`), and templates with options also rendered without."""
    mix = recipe(tmp_path, "flan2021: {weight: 1, max_examples_per_task: null, options_variants: both}\np3: {weight: 1, few_shot: 1}\n",
                 build="{template_mode: all, max_examples_per_task: 8}")
    tasks = {"rte": "super_glue_rte", "p3_super_glue_rte": "super_glue_rte"}
    code, err = build(tmp_path / "out", "--recipe", mix, "--templates", P3, tasks=tasks)
    assert code == 0, err
    m = read_manifest(str(tmp_path / "out"))
    rows = pq.read_table(tmp_path / "out" / "parquet", columns=["task", "split", "template_id", "template_type"], partitioning=None).to_pylist()
    flan = {(r["template_id"], r["template_type"]) for r in rows if r["task"] == "rte" and r["split"] == "train"}
    rte, p3 = m.tasks["rte"].counts, m.tasks["p3_super_glue_rte"].counts
    # every FLAN template that shows options, also without them; nothing capped, no few-shot
    with_options = [t for t in load_catalog().tasks["rte"].templates if t.show_options and not (t.inverted or t.free_text or t.cot)]
    assert rte["template_applications"] == 6 * (len(load_catalog().tasks["rte"].templates) + len(with_options))
    assert rte["capped"] == 0 and rte["written"] == rte["template_applications"] - rte["duplicates"]
    assert {(t.id, "zero_shot_no_options") for t in with_options} <= flan and not any(kind.startswith("few_shot") for _, kind in flan)
    # the 10 P3 prompts zero-shot and 1-shot, capped at 8
    assert p3["template_applications"] == 6 * 10 * 2 and m.tasks["p3_super_glue_rte"].written_by_split["train"] == 8 and p3["capped"] > 0
    assert m.config["collections"]["flan2021"] == {"weight": 1, "mixing_rate_cap": None, "max_examples_per_task": None, "options_variants": "both"}
    assert m.collections["flan2021"]["settings"] == {"template_mode": "all", "max_examples_per_task": None, "options_variants": "both", "few_shot": 0}
    assert m.collections["p3"]["settings"] == {"template_mode": "all", "max_examples_per_task": 8, "options_variants": "template", "few_shot": 1}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| templates all, uncapped, options also hidden, zero-shot |" in card
    assert "| templates all, at most 8 per task, options as templated, zero-shot and 1-shot |" in card


def test_a_collection_setting_the_build_would_refuse_is_refused_naming_the_collection(tmp_path):
    code, err = build(tmp_path / "out", "--recipe", recipe(tmp_path, "flan2021: {weight: 1, options_variants: neither}\n"), tasks={"rte": None})
    assert code == 2 and "collection flan2021: --options-variants neither: choose from template, both" in err


# --- the manifest -------------------------------------------------------------------------------


def test_rates_are_the_collection_weight_shared_examples_proportionally(weighted):
    m = read_manifest(str(weighted))
    tasks = m.tasks
    assert {t: e.collection for t, e in tasks.items()} == {"p3_glue_sst2": "p3", "p3_super_glue_rte": "p3", "rte": "flan2021", "sst2": "flan2021"}
    train = {t: e.written_by_split["train"] for t, e in tasks.items()}
    assert all(n > 5 for n in train.values())
    # p3's own cap (5) bounds its tasks' weights; flan2021 takes the build's (3000)
    assert {t: e.mixing_weight for t, e in tasks.items()} == {"p3_glue_sst2": 5, "p3_super_glue_rte": 5, "rte": train["rte"], "sst2": train["sst2"]}
    # cot is weighed but has no task here: flan2021 3 and p3 1 are shared out as 3/4 and 1/4
    flan = train["rte"] + train["sst2"]
    assert tasks["rte"].rate == pytest.approx(0.75 * train["rte"] / flan)
    assert tasks["sst2"].rate == pytest.approx(0.75 * train["sst2"] / flan)
    assert tasks["p3_glue_sst2"].rate == tasks["p3_super_glue_rte"].rate == pytest.approx(0.125)
    built_as = {"template_mode": "all", "max_examples_per_task": None, "options_variants": "template", "few_shot": 0}
    assert all(c.pop("settings") == built_as for c in m.collections.values())
    assert m.collections == {
        "cot": {"weight": 2, "rate": 0.0, "tasks": 0, "written": 0, "train": 0},
        "flan2021": {"weight": 3, "rate": pytest.approx(0.75), "tasks": 2, "written": tasks["rte"].counts["written"] + tasks["sst2"].counts["written"], "train": flan},
        "p3": {"weight": 1, "rate": pytest.approx(0.25), "tasks": 2, "written": train["p3_glue_sst2"] + train["p3_super_glue_rte"],
               "train": train["p3_glue_sst2"] + train["p3_super_glue_rte"]},
    }
    assert m.config["collections"] == {"flan2021": {"weight": 3, "mixing_rate_cap": None}, "p3": {"weight": 1, "mixing_rate_cap": 5},
                                       "cot": {"weight": 2, "mixing_rate_cap": None}}
    card = (weighted / "README.md").read_text()
    assert "| p3 | 1 | 0.2500 | 2 |" in card and "| cot | 2 | 0.0000 | 0 | 0 | 0 |" in card
    assert "| p3_glue_sst2 | sentiment | p3 |" in card


def test_without_collections_the_build_is_one_examples_proportional_mixture(tmp_path):
    code, err = build(tmp_path / "out", "--templates", P3, "--mixing-rate-cap", "20")
    assert code == 0, err
    m = read_manifest(str(tmp_path / "out"))
    total = sum(e.mixing_weight for e in m.tasks.values())
    assert {t: e.rate for t, e in m.tasks.items()} == pytest.approx({t: e.mixing_weight / total for t, e in m.tasks.items()})
    assert m.collections["p3"]["weight"] is None and m.collections["p3"]["tasks"] == 2


def test_mixing_rates_drop_empty_collections_and_refuse_unweighted_tasks():
    of = {"a": "x", "b": "x", "c": "y", "d": "z"}
    assert mixing_rates({"a": 1, "b": 3, "c": 0, "d": 2}, of, {"x": 1, "y": 5, "z": 1}) == pytest.approx({"a": 0.125, "b": 0.375, "d": 0.5})
    assert mixing_rates({"a": 1, "b": 3}, of) == pytest.approx({"a": 0.25, "b": 0.75})
    with pytest.raises(ValueError, match=r"d \(z\)"):
        mixing_rates({"a": 1, "d": 1}, of, {"x": 1})


# --- dedup across collections -------------------------------------------------------------------


def test_the_same_row_through_two_collections_is_two_records_unless_the_text_collides(tmp_path, weighted):
    table = pq.read_table(weighted / "parquet", columns=["task", "collection", "inputs"], partitioning=None).to_pylist()
    premise = "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44"
    assert {(r["task"], r["collection"]) for r in table if premise in r["inputs"]} == {("rte", "flan2021"), ("p3_super_glue_rte", "p3")}
    # a P3-collection copy of RTE whose first template renders exactly as FLAN's rte_01
    own = tmp_path / "own" / "nli"
    own.mkdir(parents=True)
    rte = (Path(load_catalog().tasks["rte"].path)).read_text()
    (own / "rte_p3copy.yaml").write_text(rte.replace("name: rte\n", "name: rte_p3copy\ncollection: p3\n", 1))  # the first: the task, not its source
    tasks = {"rte": "super_glue_rte", "rte_p3copy": "super_glue_rte"}
    code, err = build(tmp_path / "out", "--templates", str(tmp_path / "own"), tasks=tasks)
    assert code == 0, err
    m = read_manifest(str(tmp_path / "out"))
    copy, original = m.tasks["rte_p3copy"].counts, m.tasks["rte"].counts
    assert copy["written"] == 0 and copy["duplicates"] == copy["template_applications"] == original["written"] > 0
    assert m.collections["p3"]["written"] == 0 and m.tasks["rte_p3copy"].rate == 0.0


# --- the trainer --------------------------------------------------------------------------------


def test_the_trainer_mixes_as_the_build_recorded_and_a_held_out_cluster_leaves_its_collection_weight(weighted):
    m = read_manifest(str(weighted))
    collection_of, weights = manifest_collections(m)
    assert weights == {"flan2021": 3.0, "p3": 1.0, "cot": 2.0}

    def trainer(holdout: tuple[str, ...]) -> dict[str, float]:
        return mixture_weights(task_sizes(m, train_shards(m, "parquet", holdout)), explicit=manifest_mixing_weights(m),
                               collection_of=collection_of, collection_weights=weights)

    assert trainer(()) == pytest.approx({t: e.rate for t, e in m.tasks.items()})
    assert trainer(("nli",)) == pytest.approx({"sst2": 0.75, "p3_glue_sst2": 0.25})  # not 3:1 of their old rates
    assert mixture_weights({"rte": 4, "sst2": 4}, method="equal", collection_of=collection_of, collection_weights=weights) == {"rte": 0.5, "sst2": 0.5}
    seqio_plan = plan_corpus(m, prefix="ff_")
    assert seqio_plan.task_rates == pytest.approx({t: e.rate for t, e in m.tasks.items()})
    assert seqio_plan.rates == pytest.approx({f"ff_cluster:{c.cluster}": sum(m.tasks[t].rate for t in c.factors) for c in seqio_plan.clusters})


# --- the flan2022-lite recipe -------------------------------------------------------------------


def test_flan2022_lite_loads_with_flan_2022s_weights():
    settings = load_recipe("flan2022-lite")
    assert settings["recipe"] == "flan2022-lite@2"
    assert {c: s["weight"] for c, s in settings["collections"].items()} == {"flan2021": 0.4, "p3": 0.32, "niv2": 0.2, "cot": 0.05, "dialog": 0.03}


def test_flan2022_lite_builds_a_task_of_each_collection(tmp_path):
    niv2 = Path(__file__).resolve().parents[1] / "data" / "niv2" / "task1193_food_course_classification.json"
    tasks = {"rte": None, "p3_super_glue_rte": "super_glue_rte", "niv2": str(niv2), "aqua_rat": None}
    code, err = build(tmp_path / "out", "--recipe", "flan2022-lite", "--templates", P3, "--demo", tasks=tasks)
    assert code == 0, err
    m = read_manifest(str(tmp_path / "out"))
    shares = {c: s["rate"] for c, s in m.collections.items()}
    assert shares == pytest.approx({"flan2021": 0.4 / 0.97, "p3": 0.32 / 0.97, "niv2": 0.2 / 0.97, "cot": 0.05 / 0.97, "dialog": 0.0})
    rows = pq.read_table(tmp_path / "out" / "parquet", columns=["collection", "template_type"], partitioning=None).to_pylist()
    assert {"zero_shot", "zero_shot_no_options", "few_shot", "few_shot_no_options", "cot", "few_shot_cot"} <= {r["template_type"] for r in rows}
    # niv2 is built with its own few-shot templates only (few_shot: 0 in the recipe)
    assert {r["template_type"] for r in rows if r["collection"] == "niv2"} == {"zero_shot"}
