"""`flanforge stats`: what it gathers from a real build equals the manifest and the shards, the
length sample is bounded and the one the docs describe, and record text cannot become markup."""
from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from html import unescape
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.cli import main
from flanforge.beam_pipelines.stats.command import summary_lines
from flanforge.beam_pipelines.stats.gather import counter_names, gather, sample_quotas, sum_present
from flanforge.beam_pipelines.stats.histogram import MEASURES, Histogram, TextLengths, bin_range
from flanforge.beam_pipelines.stats.page import SORT_SCRIPT, content_security_policy, render_page
from flanforge.schemas.manifest import COUNTERS, mixing_rates, read_manifest
from flanforge.templates import TEMPLATES_DIR

from specs import GENERATIVE_SPEC as ECHO_SPEC  # a generative task in its own cluster, so the corpus has two

SCRIPT_ROW = "<script>window.__pwned = 1</script> The river rose."
IMG_ROW = '<img src=x onerror="window.__pwned = 2">'
ECHO_ROWS = [
    {"text": SCRIPT_ROW, "meta": {"title": IMG_ROW}},
    *({"text": f"Story number {i} about the weather.", "meta": {"title": f"Weather {i}"}} for i in range(11)),
    {"text": "Story number 3 about the weather.", "meta": {"title": "Weather 3"}},  # a duplicate
]


def build_corpus(root: Path) -> Path:
    """rte (bundled demo rows, cluster nli) + echo_title (the rows above and one broken line, so
    there are duplicates and a dead letter); returns the output folder."""
    templates = root / "templates"
    (templates / "nli").mkdir(parents=True)
    (templates / "summarization").mkdir()
    shutil.copy(TEMPLATES_DIR / "clusters.yaml", templates / "clusters.yaml")
    shutil.copytree(TEMPLATES_DIR / "recipes", templates / "recipes")
    shutil.copy(TEMPLATES_DIR / "nli" / "rte.yaml", templates / "nli" / "rte.yaml")
    (templates / "summarization" / "echo_title.yaml").write_text(ECHO_SPEC)
    rows = root / "echo.jsonl"
    rows.write_text("\n".join([json.dumps(r) for r in ECHO_ROWS] + ["{not json"]) + "\n")
    out = root / "out"
    args = ["--demo", "--tasks", "rte,echo_title", "--source", f"echo_title={rows}", "--max-error-rate", "0.5",
            "--templates", str(templates), "--output", str(out), "--no-progress"]
    err = io.StringIO()
    assert run_build_cli(args, io.StringIO(), err) == 0, err.getvalue()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def parquet_rows(corpus) -> list[dict]:
    return pq.read_table(str(corpus / "parquet")).to_pylist()


def lengths_of(rows: list[dict]) -> TextLengths:
    lengths = TextLengths()
    lengths.add([r["inputs"] for r in rows], [r["targets"] for r in rows])
    return lengths


def test_stats_equal_the_manifest_and_the_shards(corpus, parquet_rows):
    stats = gather(str(corpus), sample_rows=10**6, examples_per_task=2)
    raw = json.loads((corpus / "manifest.json").read_text())
    assert stats.totals["duplicates"] > 0 and stats.totals["read_errors"] == 1  # the corpus exercises the funnel
    assert {k: stats.totals[k] for k in raw["totals"]} == raw["totals"]
    assert {c: {k: v[k] for k in raw["clusters"][c]} for c, v in stats.by_cluster.items()} == raw["clusters"]
    assert stats.counters[: len(COUNTERS)] == COUNTERS
    assert stats.problems == ()

    assert stats.parquet_rows == len(parquet_rows) == stats.totals["written"]
    counted = Counter((r["task"], r["template_id"]) for r in parquet_rows)
    assert {(t, tid): n for t, per in stats.templates.items() for tid, n in per.items()} == dict(counted)
    for task, entry in read_manifest(str(corpus)).tasks.items():
        assert sum(stats.templates[task].values()) == entry.counts["written"]

    # every record measured: the histograms are exactly those of all the rows, per cluster
    assert stats.sampled_rows == len(parquet_rows)
    for cluster in ("nli", "summarization"):
        expected = lengths_of([r for r in parquet_rows if r["cluster"] == cluster])
        assert stats.lengths[cluster].histograms == expected.histograms
    assert stats.overall_lengths().histograms == lengths_of(parquet_rows).histograms

    records = {(r["task"], r["template_id"], r["split"], r["inputs"], r["targets"]) for r in parquet_rows}
    assert set(stats.examples) == {"rte", "echo_title"}
    for task, shown in stats.examples.items():
        assert len(shown) == 2
        assert all((e.task, e.template_id, e.split, e.inputs, e.targets) in records and e.task == task for e in shown)


def test_length_sample_is_bounded_and_is_each_shards_lowest_content_hashes(corpus, parquet_rows):
    limit = 7
    stats = gather(str(corpus), sample_rows=limit, examples_per_task=1)
    shards = read_manifest(str(corpus)).shards_for(fmt="parquet")
    quotas = sample_quotas([s.rows for s in shards], limit)
    assert limit <= stats.sampled_rows == sum(quotas) <= limit + len(shards) < len(parquet_rows)
    expected = TextLengths()
    for shard, quota in zip(shards, quotas):
        rows = sorted((r for r in parquet_rows if r["cluster"] == shard.cluster and r["split"] == shard.split), key=lambda r: r["content_hash"])
        expected.merge(lengths_of(rows[:quota]))
    assert stats.overall_lengths().histograms == expected.histograms
    assert render_page(stats) == render_page(gather(str(corpus), sample_rows=limit, examples_per_task=1))  # same corpus, same bytes


def test_sample_quotas():
    assert sample_quotas([100, 0, 50], 10) == [7, 0, 4]
    assert sample_quotas([3, 4], 7) == [3, 4]
    assert sum(sample_quotas([1] * 50, 10)) == 50  # at most the limit plus one row per shard


def test_histogram_bins_are_powers_of_two():
    h = Histogram()
    for n in (0, 1, 2, 3, 4, 7, 8, 1000):
        h.add(n)
    assert h.counts == [1, 1, 2, 2, 1, 0, 0, 0, 0, 0, 1]
    assert [bin_range(k) for k in (0, 1, 2, 3, 10)] == [(0, 0), (1, 1), (2, 3), (4, 7), (512, 1023)]
    assert h.rows == 8 and h.longest == 1000 and h.mean == 1025 / 8
    other = Histogram()
    other.add(5000)
    h.merge(other)
    assert h.rows == 9 and len(h.counts) == 14 and h.counts[13] == 1 and h.longest == 5000
    words = TextLengths()
    words.add(["  two\u00a0words "], [""])
    assert words.histograms["inputs", "words"].counts == [0, 0, 1] and words.histograms["targets", "chars"].counts == [1]
    assert len(MEASURES) == 4


def test_counters_follow_counters_order_and_absent_ones_stay_absent():
    counts = [{"written": 2, "read": 1, "zz_new": 1}, {"written": 3, "read": 4}]
    assert counter_names(counts) == COUNTERS + ("zz_new",)
    assert sum_present(counts) == {"written": 5, "read": 5, "zz_new": 1}


def test_record_text_is_escaped_and_only_the_pages_own_script_can_run(corpus):
    html = render_page(gather(str(corpus), sample_rows=1000, examples_per_task=20))
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # the row is shown, as text
    assert "<script>window.__pwned" not in html and "<img" not in html and "onerror=\"window" not in html
    assert html.count("<script") == 1 and f"<script>{SORT_SCRIPT}</script>" in html
    assert f'content="{content_security_policy(SORT_SCRIPT)}"' in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched


def section(html: str, anchor: str) -> str:
    return html.split(f'id="{anchor}"')[1].split("</section>")[0]


def test_contamination_and_near_dedup_sections(corpus):
    stats = gather(str(corpus), sample_rows=100, examples_per_task=0)
    assert "This build recorded no contamination check." in render_page(dataclasses.replace(stats, contamination=None))
    found = {
        "ngram_words": 13, "decontaminated": False, "against": ["rte:validation"],
        "tasks": {"rte": {"checked": 10, "exact": 2, "ngram": 1, "contaminated": 3}, "echo_title": {"checked": 12, "exact": 0, "ngram": 0, "contaminated": 0}},
    }
    config = {**stats.manifest.config, "near_dedup": True, "near_dedup_threshold": 0.8, "near_dedup_bands": "20x6"}
    samples = [{"path": "near_duplicates/train.jsonl", "split": "train", "rows": 4, "sha256": "ab"}]
    html = section(render_page(dataclasses.replace(stats, contamination=found, near_duplicate_samples=samples,
                                                   manifest=dataclasses.replace(stats.manifest, config=config))), "contamination")
    assert "ngram_words" in html and "rte:validation" in html and "near_dedup_bands" in html and "20x6" in html
    assert "<td>rte</td>" in html and "<td>echo_title</td>" not in html  # only tasks with findings
    assert "<td>near_duplicates/train.jsonl</td>" in html and "<td>ab</td>" not in html
    clean = {**found, "tasks": {"rte": {"checked": 10, "exact": 0, "ngram": 0, "contaminated": 0}}}
    assert "No contamination found in the 1 tasks checked." in render_page(dataclasses.replace(stats, contamination=clean))
    as_object = {**stats.manifest.config, "near_dedup": {"threshold": 0.7, "num_perm": 128}}
    assert "num_perm" in section(render_page(dataclasses.replace(stats, manifest=dataclasses.replace(stats.manifest, config=as_object))), "contamination")
    own = section(render_page(stats), "contamination")  # this build: nothing to check against, no near dedup
    assert "This build recorded no contamination check." in own and "This build did not remove near duplicates." in own


def table_rows(html: str) -> list[list[str]]:
    """The text of each row's cells, for every table row in `html` that has <td> cells."""
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]
    return [[unescape(re.sub(r"<[^>]+>", "", c)) for c in row] for row in rows if row]


def rows_of(html: str, first: str) -> list[list[str]]:
    return [row for row in table_rows(html) if row[0] == first]


HOSTILE_COLLECTION = "<b>bold</b>"


def in_collections(stats, of: dict[str, str], weights: dict[str, float]):
    """The corpus's stats as if its recipe had weighed collections: each task's collection and rate,
    and the per-collection summary, as a build records them."""
    m = stats.manifest
    rates = mixing_rates({t: e.mixing_weight for t, e in m.tasks.items()}, of, weights)
    tasks = {t: dataclasses.replace(e, collection=of[t], rate=rates[t]) for t, e in m.tasks.items()}
    summary = {
        c: {"weight": w, "rate": sum(rates[t] for t in of if of[t] == c), "tasks": sum(of[t] == c for t in of),
            "written": sum(tasks[t].counts["written"] for t in of if of[t] == c),
            "train": sum(tasks[t].written_by_split.get("train", 0) for t in of if of[t] == c)}
        for c, w in weights.items()
    }
    summary[HOSTILE_COLLECTION]["settings"] = {"few_shot": 2, "template_mode": m.config["template_mode"]}  # its own few-shot
    summary["p3"]["settings"] = {"max_examples_per_task": None, "few_shot": m.config["few_shot"]}  # no cap, where the build has one
    config = {**m.config, "max_examples_per_task": 100, "collections": {c: {"weight": w, "mixing_rate_cap": 1000 if c == "flan2021" else None} for c, w in weights.items()}}
    return dataclasses.replace(stats, manifest=dataclasses.replace(m, tasks=tasks, collections=summary, config=config))


def test_collections_section_and_each_tasks_collection_and_rate(corpus):
    stats = gather(str(corpus), sample_rows=100, examples_per_task=0)
    own = stats.manifest  # built without a recipe: one collection, no weight, every train record in one mixture
    assert set(own.collections) == {"flan2021"} and own.collections["flan2021"]["weight"] is None
    html = section(render_page(stats), "collections")
    assert "weighs no collections" in html
    c = own.collections["flan2021"]
    assert rows_of(html, "flan2021") == [["flan2021", "–", f"{c['rate']:.4g}", "2", f"{c['train']:,}", f"{c['written']:,}", "100.0%"]]

    of = {"rte": "flan2021", "echo_title": HOSTILE_COLLECTION}
    weighted = in_collections(stats, of, {"flan2021": 0.4, HOSTILE_COLLECTION: 0.1, "p3": 0.32})
    page = render_page(weighted)
    html = section(page, "collections")
    assert HOSTILE_COLLECTION not in page and "&lt;b&gt;bold&lt;/b&gt;" in html  # a name from the manifest is text
    summary = weighted.manifest.collections
    total = sum(c["written"] for c in summary.values())
    expected = [
        [name, f"{c['weight']:.4g}", f"{c['rate']:.4g}", str(c["tasks"]), f"{c['train']:,}", f"{c['written']:,}",
         f"{c['written'] / total:.1%}", {"flan2021": "mixing_rate_cap=1000", HOSTILE_COLLECTION: "few_shot=2", "p3": "max_examples_per_task=null"}[name]]
        for name, c in sorted(summary.items(), key=lambda item: (-item[1]["rate"], item[0]))
    ]
    assert table_rows(html) == expected and expected[-1][:4] == ["p3", "0.32", "0", "0"]  # no task: rate 0, listed last
    assert sum(c["rate"] for c in summary.values()) == pytest.approx(1)
    assert "rate per collection" in html and html.count("<title>") == 3  # a bar per collection

    for name, entry in weighted.manifest.tasks.items():
        rate = f"{entry.rate:.4g}"
        assert rows_of(section(page, "mixing"), name) == [[name, entry.cluster, entry.collection, str(entry.mixing_weight), rate]]
        (record,) = rows_of(section(page, "records"), name)
        assert record[2] == entry.collection and record[5] == rate
        assert rows_of(section(page, "accounting"), name)[0][2] == entry.collection
    assert "its collection's mixing_rate_cap" in unescape(section(page, "mixing"))

    lines = summary_lines(weighted, "r.html")
    start = lines.index(next(line for line in lines if line.startswith("collection ")))
    assert [line.split()[:3] for line in lines[start + 1 : start + 4]] == [[row[0], row[1], row[2]] for row in expected]
    assert not any(line.startswith("collection ") for line in summary_lines(stats, "r.html"))  # one collection: no table


def test_a_manifest_older_than_collections_still_renders(corpus):
    stats = gather(str(corpus), sample_rows=100, examples_per_task=0)
    m = stats.manifest
    tasks = {t: dataclasses.replace(e, collection="", rate=0.0) for t, e in m.tasks.items()}
    old = dataclasses.replace(stats, manifest=dataclasses.replace(m, tasks=tasks, collections={}))
    page = render_page(old)
    assert 'id="collections"' not in page and 'href="#collections"' not in page and "<th>collection</th>" not in page
    rates = mixing_rates({t: e.mixing_weight for t, e in m.tasks.items()}, {})  # what the build then would have recorded
    for name, entry in m.tasks.items():
        assert rows_of(section(page, "mixing"), name) == [[name, entry.cluster, str(entry.mixing_weight), f"{rates[name]:.4g}"]]
    assert rates == pytest.approx({t: e.rate for t, e in m.tasks.items()})  # and did: a build without a recipe's weights
    lines = summary_lines(old, "r.html")
    assert any(re.match(r"task\s+cluster\s+written\s+mixing weight$", line) for line in lines)


def test_a_counter_the_build_did_not_keep_is_shown_as_not_counted(corpus):
    stats = gather(str(corpus), sample_rows=100, examples_per_task=0)
    manifest = stats.manifest
    tasks = {name: dataclasses.replace(e, counts={k: v for k, v in e.counts.items() if k != "skipped"}) for name, e in manifest.tasks.items()}
    html = render_page(dataclasses.replace(stats, manifest=dataclasses.replace(manifest, tasks=tasks), totals={k: v for k, v in stats.totals.items() if k != "skipped"}))
    assert "did not keep (skipped" in html and 'data-sort="-1">–</td>' in html


def test_stats_command_writes_the_report_and_prints_a_summary(corpus, tmp_path, capsys):
    assert main(["stats", str(corpus), "--sample-rows", "5", "--examples", "1"]) == 0
    out = capsys.readouterr().out
    report = corpus / "report.html"
    assert f"report: {report}" in out and report.read_text().startswith("<!DOCTYPE html>")
    assert re.search(r"^nli\s+1\s+\d+", out, re.M) and re.search(r"^summarization\s+1\s+\d+", out, re.M)
    assert "dead letters: 1 rows from 1 task(s)" in out and "lengths measured on" in out
    elsewhere = tmp_path / "sub" / "r.html"
    assert main(["stats", str(corpus), "--output", str(elsewhere)]) == 0 and elsewhere.exists()


def test_stats_of_something_that_is_not_a_build_says_why(tmp_path, capsys):
    assert main(["stats", str(tmp_path)]) == 2
    assert "no manifest.json in" in capsys.readouterr().err


def test_a_missing_shard_is_named(corpus, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy, ignore=shutil.ignore_patterns(".flanforge_*"))
    shard = read_manifest(str(copy)).shards_for(fmt="parquet", clusters=["nli"])[0]
    (copy / shard.path).unlink()
    assert main(["stats", str(copy)]) == 2
    assert f"shard listed in the manifest is missing: {copy}/{shard.path}" in capsys.readouterr().err


def test_a_build_without_parquet_still_gets_a_report(corpus, tmp_path):
    raw = json.loads((corpus / "manifest.json").read_text())
    raw["shards"] = [s for s in raw["shards"] if s["format"] != "parquet"]
    raw["config"]["formats"] = ["tfrecord"]
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    stats = gather(str(tmp_path), sample_rows=100, examples_per_task=2)
    assert stats.parquet_rows == 0 and stats.templates == {} and stats.problems == ()
    assert "This build has no Parquet shards (formats: tfrecord)" in render_page(stats)


def test_a_corpus_on_cloud_storage(corpus, gcs_emulator):
    from gcs_files import upload_tree

    from flanforge.schemas.files import read_bytes

    remote = upload_tree(corpus, f"gs://{gcs_emulator.new_bucket()}/corpus")
    assert main(["stats", remote, "--sample-rows", "10"]) == 0
    html = read_bytes(f"{remote}/report.html").decode()
    assert "<td>summarization</td>" in html and f"<p class=\"note\">{remote}</p>" in html


def test_stats_of_a_local_corpus_runs_without_beam(corpus, tmp_path):
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "apache_beam":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, NotInstalled())
        from flanforge.beam_pipelines.cli import main
        assert main(["stats", {str(corpus)!r}, "--output", {str(tmp_path / "r.html")!r}]) == 0
        assert "apache_beam" not in sys.modules
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report: " in proc.stdout and (tmp_path / "r.html").exists()
