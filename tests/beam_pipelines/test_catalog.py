from pathlib import Path

import pytest
import yaml

from flanforge.beam_pipelines.catalog import SpecError, load_catalog, load_recipe


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_loads_specs_into_dataclasses(templates_dir):
    catalog = load_catalog(templates_dir)
    assert set(catalog.tasks) == {"rte", "echo_title"}
    rte = catalog.tasks["rte"]
    assert rte.cluster == "nli" and len(rte.templates) == 10 and rte.answers.options == ("yes", "no")
    assert ("paraphrase", "nli") in catalog.holdout_overlaps
    assert [t.name for t in catalog.select(clusters=["nli"])] == ["rte"]


def test_unknown_field_names_file_and_field(templates_dir):
    path = templates_dir / "nli" / "rte.yaml"
    edit(path, lambda d: d.update(colour="blue"))
    with pytest.raises(SpecError, match=r"rte.yaml: top level: Additional properties are not allowed \('colour'"):
        load_catalog(templates_dir)


def test_template_field_error_names_template_id(templates_dir):
    path = templates_dir / "nli" / "rte.yaml"
    edit(path, lambda d: d["templates"][3].update(inverted="sometimes"))
    with pytest.raises(SpecError, match=r"rte.yaml: template rte_04 field inverted: 'sometimes' is not of type 'boolean'"):
        load_catalog(templates_dir)


def test_cross_file_rules(templates_dir):
    path = templates_dir / "nli" / "rte.yaml"

    def change(d):
        d["cluster"] = "sentiment"
        d["templates"][1]["id"] = d["templates"][0]["id"]

    edit(path, change)
    with pytest.raises(SpecError) as err:
        load_catalog(templates_dir)
    assert "template rte_01: duplicate template id" in str(err.value)
    edit(path, lambda d: d["templates"][1].update(id="rte_02"))
    with pytest.raises(SpecError, match="must match the folder 'nli'"):
        load_catalog(templates_dir)


def test_unknown_task_selection(templates_dir):
    with pytest.raises(SpecError, match="unknown task"):
        load_catalog(templates_dir).select(tasks=["nope"])


def test_several_templates_directories_stack_in_order(templates_dir, tmp_path):
    """promptsource's collection read in place, then an overlay of the user's own: later
    directories add tasks and replace earlier ones of the same name; only the first may be whole."""
    promptsource = Path(__file__).resolve().parents[1] / "data" / "promptsource" / "templates"
    mine = tmp_path / "mine"
    (mine / "nli").mkdir(parents=True)
    (mine / "recipes").mkdir()
    rte = yaml.safe_load((templates_dir / "nli" / "rte.yaml").read_text())
    (mine / "nli" / "rte.yaml").write_text(yaml.safe_dump({**rte, "templates": rte["templates"][:2]}, sort_keys=False))
    (mine / "recipes" / "flan2021.yaml").write_text("name: mine\nversion: 7\nbuild: {tasks: [rte]}\n")
    alone = load_catalog(promptsource)
    stacked = load_catalog(f"{promptsource},{mine}")
    assert set(stacked.tasks) == set(alone.tasks) and "p3_super_glue_rte" in stacked.tasks
    assert len(alone.tasks["rte"].templates) == 10 and len(stacked.tasks["rte"].templates) == 2
    assert stacked.tasks["rte"].path == str(mine / "nli" / "rte.yaml")
    assert load_recipe("flan2021", f"{promptsource},{mine}")["recipe"] == "mine@7"  # the last directory that has it
    assert load_recipe("flan2021", str(promptsource))["recipe"].startswith("flan2021@")  # overlays only: the bundled one
    whole_then_overlay = load_catalog(f"{templates_dir},{mine}")
    assert set(whole_then_overlay.tasks) == {"rte", "echo_title"} and len(whole_then_overlay.tasks["rte"].templates) == 2
    with pytest.raises(SpecError, match=r"templates: has a clusters.yaml: only the first of several --templates directories may be a whole catalog"):
        load_catalog(f"{mine},{templates_dir}")
    with pytest.raises(SpecError, match=r"nowhere: templates directory not found"):
        load_catalog(f"{mine},{tmp_path / 'nowhere'}")


def test_catalog_and_recipe_load_from_gcs_like_from_disk(gcs_emulator, templates_dir):
    from gcs_files import upload_tree

    from flanforge.beam_pipelines.catalog import load_recipe

    root = upload_tree(templates_dir, f"gs://{gcs_emulator.new_bucket()}/templates")
    remote, local = load_catalog(root), load_catalog(templates_dir)
    assert set(remote.tasks) == set(local.tasks) == {"rte", "echo_title"}
    assert remote.clusters == local.clusters and remote.holdout_overlaps == local.holdout_overlaps
    assert remote.tasks["rte"].templates == local.tasks["rte"].templates
    assert remote.tasks["rte"].path == f"{root}/nli/rte.yaml"
    assert load_recipe("flan2021", root) == load_recipe("flan2021", templates_dir)
    assert load_recipe(f"{root}/recipes/flan2021.yaml") == load_recipe("flan2021", templates_dir)
    with pytest.raises(SpecError, match=rf"recipe 'nope' not found at {root}/recipes/nope.yaml; known recipes: .*flan2021"):
        load_recipe("nope", root)


def test_gcs_catalog_errors_name_the_object(gcs_emulator, templates_dir):
    from gcs_files import upload_tree

    edit(templates_dir / "nli" / "rte.yaml", lambda d: d.update(cluster="sentiment"))
    root = upload_tree(templates_dir, f"gs://{gcs_emulator.new_bucket()}/templates")
    with pytest.raises(SpecError, match=rf"^{root}/nli/rte.yaml: field cluster: 'sentiment' must match the folder 'nli'"):
        load_catalog(root)
    with pytest.raises(SpecError, match=r"^gs://no-such-bucket-x/templates: templates directory not found$"):
        load_catalog("gs://no-such-bucket-x/templates")
