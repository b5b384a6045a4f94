"""The studio's JSON API, driven as the page drives it (Starlette's TestClient, no browser): the
catalog, live renders with validate's findings, diff and save, the write guards, rows from
--source files, and a built corpus."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request

import pytest
import yaml

from flanforge.beam_pipelines import cli
from flanforge.templates import TEMPLATES_DIR

def open_task(client, name: str = "rte") -> dict:
    response = client.get(f"/api/tasks/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def render(client, templates: list[dict], name: str = "rte", **view) -> dict:
    response = client.post(f"/api/tasks/{name}/render", json={"templates": templates, **view})
    assert response.status_code == 200, response.text
    return response.json()


def edited(templates: list[dict], index: int, **changes) -> list[dict]:
    out = [dict(t) for t in templates]
    out[index].update(changes)
    return out


def test_catalog_lists_clusters_tasks_and_counts(client, studio_dir):
    catalog = client.get("/api/catalog").json()
    assert catalog["problems"] == [] and catalog["root"] == str(studio_dir.resolve())
    tasks = {t["name"]: t for c in catalog["clusters"] for t in c["tasks"]}
    assert set(tasks) == {"rte", "echo_title"}
    spec = yaml.safe_load((studio_dir / "nli" / "rte.yaml").read_text())
    inverted = sum(bool(t.get("inverted")) for t in spec["templates"])
    assert tasks["rte"]["counts"]["templates"] == len(spec["templates"]) and tasks["rte"]["counts"]["inverted"] == inverted == 2
    assert tasks["rte"]["options"] == ["yes", "no"] and tasks["echo_title"]["options"] is None
    assert tasks["rte"]["source"]["path"] == "aps/super_glue" and tasks["rte"]["own"] is True


def test_task_detail_has_templates_in_file_order_and_samples(client):
    detail = open_task(client)
    assert [t["origin"] for t in detail["templates"]] == list(range(len(detail["templates"])))
    assert detail["templates"][0]["id"] == "rte_01" and len(detail["samples"]) == 6
    assert [s["key"] for s in detail["row_sources"]] == ["samples", "spec:train", "spec:validation"]
    assert detail["variables"] == ["premise", "hypothesis", "label", "options", "answer", "answer_index"]
    assert detail["filters"] == ["label in (0, 1)"] and detail["read_only"] == ""


def test_each_task_has_its_collection_and_says_where_it_came_from(make_client, two_collections):
    client = make_client(two_collections)
    tasks = {t["name"]: t for c in client.get("/api/catalog").json()["clusters"] for t in c["tasks"]}
    assert {name: t["collection"] for name, t in tasks.items()} == {"rte": "flan2021", "echo_title": "dialog"}
    rte, echo = open_task(client, "rte"), open_task(client, "echo_title")
    assert (rte["collection"], rte["collection_in_spec"]) == ("flan2021", False)  # the spec names none: by origin
    assert (echo["collection"], echo["collection_in_spec"]) == ("dialog", True)


def test_the_catalog_as_written_renders_clean(client):
    detail = open_task(client)
    result = render(client, detail["templates"])
    assert result["save_problems"] == [] and [f for f in result["findings"] if f["severity"] == "error"] == []
    assert [r["status"] for r in result["rows"]] == ["ok"] * 5 + ["filtered"]  # the sample with label -1
    first = result["cells"][0][0]
    assert first["options"] == ["yes", "no"] and first["inputs"].endswith("OPTIONS:\n- yes\n- no")
    assert first["targets"] == first["options"][first["answer_index"]]
    assert result["templates"][0]["inputs_chars"][0] >= len(first["inputs"]) > 0


def test_a_syntax_error_is_placed_by_line_and_column_and_the_others_still_render(client):
    detail = open_task(client)
    broken = edited(detail["templates"], 0, inputs="Premise:\n  {{ premise }\nDoes it hold?")
    result = render(client, broken)
    syntax = [f for f in result["findings"] if f["template"] == 0]
    assert syntax == [
        {"message": "unexpected '}'", "template": 0, "field": "inputs", "row": None, "line": 2, "column": 14, "severity": "error"}
    ]
    assert result["templates"][0]["rendered"] is False and all(row[0] is None for row in result["cells"])
    assert result["cells"][0][1]["inputs"]  # rte_02 still renders
    assert any("template rte_01 field inputs: line 2: unexpected '}'" in p for p in result["save_problems"])


def test_validate_findings_are_tied_to_template_and_row(client):
    templates = open_task(client)["templates"]
    draft = edited(templates, 1, inputs=templates[0]["inputs"], targets=templates[0]["targets"])  # rte_02 = rte_01
    draft = edited(draft, 2, inputs="{{ premise }} {{ hypotesis }}")  # a misspelt variable
    inverted = next(i for i, t in enumerate(templates) if t.get("inverted"))
    draft = edited(draft, inverted, targets="{{ answer }}")  # an inverted template whose target is an option
    result = render(client, draft)
    by_template = {}
    for f in result["findings"]:
        by_template.setdefault(f["template"], []).append(f)
    assert {f["row"] for f in by_template[1]} == {1, 2, 3, 4, 5}
    assert by_template[1][0]["message"] == "template rte_02 renders the same inputs and targets as template rte_01"
    undefined = [f for f in by_template[2] if f["severity"] == "error"]
    assert undefined[0]["message"] == "template rte_03 field inputs: UndefinedError: 'hypotesis' is undefined" and undefined[0]["field"] == "inputs"
    assert any(f["severity"] == "warning" and "'hypotesis', which no row on this page has" in f["message"] for f in by_template[2])
    assert "is marked inverted but its target" in by_template[inverted][0]["message"]
    assert len(result["save_problems"]) >= 3


def test_the_output_length_limit_is_the_builds(client):
    templates = open_task(client)["templates"]
    draft = edited(templates, 0, inputs="{% for i in range(5000) %}{{ premise }}{% endfor %}")
    cell = render(client, draft)["cells"][0][0]
    assert cell["error"] == "template rte_01 field inputs: output is longer than 100000 characters"


def test_variants_few_shot_and_no_options(client):
    templates = open_task(client)["templates"]
    plain = render(client, templates)["cells"][0][0]
    no_options = render(client, templates, no_options=True)["cells"][0][0]
    assert no_options["template_type"] == "zero_shot_no_options" and "OPTIONS:" not in no_options["inputs"]
    few = render(client, templates, few_shot=2)["cells"][0][0]
    assert few["template_type"] == "few_shot" and few["inputs"].endswith(plain["inputs"]) and len(few["inputs"]) > len(plain["inputs"])


def test_a_schema_problem_names_the_template_and_field(client):
    templates = open_task(client)["templates"]
    result = render(client, edited(templates, 3, targets="", id="rte 4"))
    mine = [f for f in result["findings"] if f["template"] == 3]
    assert mine and all(f["severity"] == "error" for f in mine) and result["templates"][3]["rendered"] is False
    assert any("field id" in f["message"] for f in mine) and any("field targets" in f["message"] for f in mine)


def test_broken_draft_is_never_saved(client, studio_dir):
    detail = open_task(client)
    before = (studio_dir / "nli" / "rte.yaml").read_bytes()
    broken = edited(detail["templates"], 0, inputs="{{ premise }")
    check = client.post("/api/tasks/rte/check", json={"templates": broken, "base_sha256": detail["base_sha256"]}).json()
    assert check["problems"] and "-      {{ premise }}\n" in check["diff"]
    response = client.post("/api/tasks/rte/save", json={"templates": broken, "base_sha256": detail["base_sha256"]})
    assert response.status_code == 422 and "not saved" in response.json()["error"]
    assert (studio_dir / "nli" / "rte.yaml").read_bytes() == before


def test_save_writes_only_the_change_and_keeps_comments(client, studio_dir, rte_comment):
    path = studio_dir / "nli" / "rte.yaml"
    before = path.read_text()
    detail = open_task(client)
    draft = edited(detail["templates"], 0, inputs="Passage: {{ premise }}\nClaim: {{ hypothesis }}\nDoes the passage back the claim?")
    saved = client.post("/api/tasks/rte/save", json={"templates": draft, "base_sha256": detail["base_sha256"]})
    assert saved.status_code == 200, saved.text
    after = path.read_text()
    assert rte_comment in after and "label in (0, 1)   # the test split ships label -1" in after
    changed = [line for line in saved.json()["diff"].splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        "-      {{ premise }}",
        "-",
        '-      Does the passage above support the claim that "{{ hypothesis }}"?',
        "+      Passage: {{ premise }}",
        "+      Claim: {{ hypothesis }}",
        "+      Does the passage back the claim?",
    ]
    assert len(after.splitlines()) == len(before.splitlines())
    reopened = open_task(client)
    assert reopened["templates"][0]["inputs"] == draft[0]["inputs"] and reopened["base_sha256"] == saved.json()["base_sha256"]
    # the old base is stale now: a second tab's save is refused rather than overwriting
    stale = client.post("/api/tasks/rte/save", json={"templates": detail["templates"], "base_sha256": detail["base_sha256"]})
    assert stale.status_code == 409


def test_add_duplicate_delete_reorder_and_mark_inverted(client, studio_dir, rte_comment):
    detail = open_task(client)
    t = detail["templates"]
    new = {"id": "rte_11", "inputs": "Write a claim that {{ premise | trim('.') }} rules out.", "targets": "{{ hypothesis }}", "inverted": True,
           "filter": "answer_index == 1", "origin": None}
    copy = {**t[4], "id": "rte_12", "inputs": t[4]["inputs"] + " Answer yes or no.", "origin": None}
    draft = [t[1], t[0], *t[3:], copy, new]  # rte_02 and rte_01 swapped, rte_03 deleted
    response = client.post("/api/tasks/rte/save", json={"templates": draft, "base_sha256": detail["base_sha256"]})
    assert response.status_code == 200, response.text
    written = yaml.safe_load((studio_dir / "nli" / "rte.yaml").read_text())["templates"]
    assert [w["id"] for w in written] == [d["id"] for d in draft]
    assert written[-1] == {"id": "rte_11", "inputs": new["inputs"], "targets": "{{ hypothesis }}", "inverted": True, "filter": "answer_index == 1"}
    assert rte_comment in (studio_dir / "nli" / "rte.yaml").read_text()


def test_duplicate_ids_are_refused(client):
    t = open_task(client)["templates"]
    result = render(client, [*t, {**t[0], "origin": None}])
    assert result["findings"][0]["template"] == len(t) and "duplicate template id" in result["findings"][0]["message"]
    assert result["save_problems"]


def test_unknown_or_traversing_task_names_are_not_found(client):
    for name in ("nope", "..%2F..%2Fetc%2Fpasswd", "rte.yaml"):
        assert client.get(f"/api/tasks/{name}").status_code == 404
    assert client.post("/api/tasks/..%2Frte/save", json={"templates": []}).status_code == 404


def test_a_symlinked_spec_is_never_written_through(make_client, studio_dir, tmp_path):
    outside = tmp_path / "elsewhere.yaml"
    spec = studio_dir / "nli" / "rte.yaml"
    outside.write_text(spec.read_text())
    spec.unlink()
    spec.symlink_to(outside)
    client = make_client(studio_dir)
    detail = open_task(client)  # reading through the link is fine: the catalog does it too
    assert detail["save_path"] == "" and "symbolic link" in detail["read_only"]
    draft = edited(detail["templates"], 0, inputs="Changed: {{ premise }}")
    response = client.post("/api/tasks/rte/save", json={"templates": draft, "base_sha256": detail["base_sha256"]})
    assert response.status_code == 403 and "symbolic link" in response.json()["error"]
    assert "Changed:" not in outside.read_text() and spec.is_symlink()


def test_a_symlinked_cluster_folder_is_never_written_through(make_client, studio_dir, tmp_path):
    outside = tmp_path / "outside_nli"
    (studio_dir / "nli").rename(outside)
    (studio_dir / "nli").symlink_to(outside, target_is_directory=True)
    client = make_client(studio_dir)
    detail = open_task(client)
    response = client.post("/api/tasks/rte/save", json={"templates": detail["templates"], "base_sha256": detail["base_sha256"]})
    assert response.status_code == 403


def test_an_overlay_saves_its_own_copy_of_a_bundled_task(make_client, studio_dir, tmp_path):
    overlay = tmp_path / "my_specs"  # no clusters.yaml: an overlay on the bundled catalog
    (overlay / "summarization").mkdir(parents=True)
    shutil.copy(studio_dir / "summarization" / "echo_title.yaml", overlay / "summarization")
    bundled = (TEMPLATES_DIR / "nli" / "rte.yaml").read_bytes()
    client = make_client(overlay)
    catalog = client.get("/api/catalog").json()
    tasks = {t["name"]: t for c in catalog["clusters"] for t in c["tasks"]}
    assert catalog["overlay"] and tasks["echo_title"]["own"] and not tasks["rte"]["own"]
    detail = open_task(client)
    assert detail["save_path"] == str(overlay.resolve() / "nli" / "rte.yaml")
    draft = edited(detail["templates"], 0, inputs="Overlay: {{ premise }}")
    assert client.post("/api/tasks/rte/save", json={"templates": draft, "base_sha256": detail["base_sha256"]}).status_code == 200
    assert (TEMPLATES_DIR / "nli" / "rte.yaml").read_bytes() == bundled
    assert open_task(client)["templates"][0]["inputs"] == "Overlay: {{ premise }}"
    assert open_task(client)["own"] is True


def test_requests_from_other_sites_are_refused(client):
    assert client.get("/api/catalog", headers={"host": "evil.example"}).status_code == 400
    assert client.post("/api/tasks/rte/save", json={"templates": []}, headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/tasks/rte/save", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert client.get("/", headers={"origin": "http://127.0.0.1:8765"}).status_code == 200


def test_the_page_and_its_assets_are_served_locally(client):
    page = client.get("/").text
    assert '<script src="/static/studio.js"' in page and "http" not in page.replace('href="#', "")
    for asset in ("/static/studio.js", "/static/studio.css"):
        response = client.get(asset)
        assert response.status_code == 200 and "http://" not in response.text and "https://" not in response.text


def test_rows_from_a_source_file_with_paging_and_read_problems(make_client, studio_dir, tmp_path):
    rows = tmp_path / "echo.jsonl"
    lines = [json.dumps({"text": f"Body number {i}.", "meta": {"title": f"Title {i}"}}) for i in range(12)]
    lines.insert(3, "{not json")
    rows.write_text("\n".join(lines) + "\n")
    client = make_client(studio_dir, {"echo_title": {"train": str(rows)}})
    detail = open_task(client, "echo_title")
    assert "source:train" in [s["key"] for s in detail["row_sources"]]
    first = render(client, detail["templates"], "echo_title", rows="source:train", limit=5)
    assert [r["row"]["text"] for r in first["rows"]] == [f"Body number {i}." for i in range(5)]
    assert first["rows"][0]["example_id"].startswith("train:echo.jsonl:")
    bad_at = sum(len(line) + 1 for line in lines[:3])
    assert first["page"]["has_more"] and len(first["page"]["read_problems"]) == 1
    assert first["page"]["read_problems"][0].startswith(f"echo.jsonl byte {bad_at}: malformed JSON")
    assert first["cells"][0][0]["inputs"] == "Write a title for: Body number 0." and first["cells"][0][0]["targets"] == "Title 0"
    last = render(client, detail["templates"], "echo_title", rows="source:train", offset=10, limit=5)
    assert [r["row"]["text"] for r in last["rows"]] == ["Body number 10.", "Body number 11."] and not last["page"]["has_more"]
    assert client.post("/api/tasks/echo_title/render", json={"templates": detail["templates"], "rows": "source:nope"}).status_code == 400


def test_corpus_review_pages_records_by_template(client, built_corpus):
    summary = client.get("/api/corpus", params={"dir": str(built_corpus)}).json()
    tasks = {t["name"]: t for t in summary["tasks"]}
    assert summary["format"] == "parquet" and set(tasks) == {"rte", "sst2"}
    manifest = json.loads((built_corpus / "manifest.json").read_text())["tasks"]
    assert {n: (t["collection"], t["rate"]) for n, t in tasks.items()} == {n: (e["collection"], e["rate"]) for n, e in manifest.items()}
    assert sum(t["rate"] for t in tasks.values()) == pytest.approx(1)
    written = tasks["rte"]["counts"]["written"]
    page = client.get("/api/corpus/records", params={"dir": str(built_corpus), "task": "rte", "split": "train", "limit": 7}).json()
    assert page["total"] == written == sum(page["per_template"].values()) and len(page["records"]) == 7
    assert {r["task"] for r in page["records"]} == {"rte"}
    one = client.get("/api/corpus/records", params={"dir": str(built_corpus), "task": "rte", "template": "rte_03", "offset": 1, "limit": 50}).json()
    assert one["total"] == page["per_template"]["rte_03"] and len(one["records"]) == one["total"] - 1
    assert {r["template_id"] for r in one["records"]} == {"rte_03"}


def test_corpus_errors_are_clear(client, tmp_path, built_corpus):
    missing = client.get("/api/corpus", params={"dir": str(tmp_path / "nothing")})
    assert missing.status_code in (404, 422) and "not a finished flanforge build" in missing.json()["error"]
    unknown = client.get("/api/corpus/records", params={"dir": str(built_corpus), "task": "nope"})
    assert unknown.status_code == 422 and "no task 'nope'" in unknown.json()["error"]
    assert client.get("/api/corpus").status_code == 400


def test_the_command_serves_the_studio_until_stopped(studio_dir):
    command = [sys.executable, "-m", "flanforge.beam_pipelines.cli", "studio", "--templates", str(studio_dir), "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("flanforge studio: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/catalog", timeout=10) as response:
            catalog = json.load(response)
        assert catalog["root"] == str(studio_dir.resolve()) and catalog["problems"] == []
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"flanforge studio" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_command_refuses_what_it_cannot_serve(studio_dir, capsys):
    assert cli.main(["studio", "--templates", str(studio_dir), "--source", "nope=rows.jsonl"]) == 2
    assert "--source names task(s) not in the catalog: nope" in capsys.readouterr().err
    assert cli.main(["studio", "--templates", "gs://bucket/specs"]) == 2
    assert "the studio edits a local templates directory" in capsys.readouterr().err
    assert cli.main(["studio", "--templates", f"{studio_dir},{studio_dir}"]) == 2
    assert "the studio edits one templates directory" in capsys.readouterr().err
    assert cli.main(["studio", "--templates", str(studio_dir / "missing")]) == 2
    assert "templates directory not found" in capsys.readouterr().err
