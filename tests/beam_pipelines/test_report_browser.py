"""The report of a small real corpus in headless Chromium: it loads offline without a console
error, names every cluster, keeps a hostile record inert, and its tables sort; the report of a
flan2022-lite build shows its collections with the manifest's numbers."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from browser import browser_page, screenshot
from test_report import SCRIPT_ROW, build_corpus

from flanforge.beam_pipelines.build import run_build_cli
from flanforge.beam_pipelines.cli import main
from flanforge.schemas.manifest import Manifest, read_manifest

# One task of each collection that has demo rows (p3 has none bundled): a few seconds.
FLAN2022_TASKS = "rte,aqua_rat,niv2,qrecc"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[str]]:
    corpus = build_corpus(tmp_path_factory.mktemp("report_browser"))
    assert main(["stats", str(corpus), "--examples", "30"]) == 0  # every echo_title record, the hostile one included
    return corpus / "report.html", sorted(read_manifest(str(corpus)).clusters)


@pytest.fixture(scope="module")
def flan2022_report(tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("report_flan2022") / "out"
    err = io.StringIO()
    args = ["--recipe", "flan2022-lite", "--demo", "--tasks", FLAN2022_TASKS, "--output", str(out), "--no-progress"]
    assert run_build_cli(args, io.StringIO(), err) == 0, err.getvalue()
    assert main(["stats", str(out), "--examples", "1"]) == 0
    return out / "report.html", read_manifest(str(out))


def column_of(table, heading: str) -> int:
    """The 1-based position of a column by its heading, for :nth-child."""
    return table.locator("thead th").all_inner_texts().index(heading) + 1


def test_report_in_chromium(report):
    path, clusters = report
    assert len(clusters) >= 2
    with browser_page() as (page, log):
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.locator("#examples summary", has_text="echo_title").click()
        text = page.inner_text("body")
        for cluster in clusters:
            assert cluster in text
        assert SCRIPT_ROW in text  # the record is shown as text...
        assert page.evaluate("window.__pwned") is None  # ...and neither its <script> nor its <img onerror> ran
        assert page.locator("#examples img").count() == 0
        assert page.locator("svg.chart").count() >= 6
        assert requests == [path.as_uri()]  # the page fetched nothing else

        table = page.locator("#records table").nth(1)  # per task
        heading = table.locator("th", has_text="written")
        cells = f"tbody tr td:nth-child({column_of(table, 'written')})"
        heading.click()
        column = [int(c.replace(",", "")) for c in table.locator(cells).all_inner_texts()]
        assert column == sorted(column, reverse=True) and heading.get_attribute("aria-sort") == "descending"
        heading.click()
        column = [int(c.replace(",", "")) for c in table.locator(cells).all_inner_texts()]
        assert column == sorted(column) and column[0] < column[-1]

        assert log.errors == []
        page.evaluate("window.scrollTo(0, 0)")
        assert screenshot(page, "report-small-corpus").stat().st_size > 10_000


def test_collections_of_a_flan2022_lite_build_in_chromium(flan2022_report):
    path, manifest = flan2022_report
    summary = manifest.collections
    assert len(summary) >= 4 and sum(1 for c in summary.values() if c["tasks"]) == 4
    with browser_page() as (page, log):
        page.goto(path.as_uri())
        page.click('nav a[href="#collections"]')
        section = page.locator("#collections")
        assert section.is_visible() and section.locator("svg.chart").is_visible()
        table = section.locator("table")
        headings = table.locator("thead th").all_inner_texts()
        rows = {}
        for row in table.locator("tbody tr").all():
            cells = dict(zip(headings, row.locator("td").all_inner_texts()))
            rows[cells["collection"]] = cells
        assert set(rows) == set(summary)
        for name, c in summary.items():
            shown = rows[name]
            assert float(shown["recipe weight"]) == c["weight"]
            assert float(shown["rate"]) == pytest.approx(c["rate"], rel=1e-3)
            assert [int(shown[k].replace(",", "")) for k in ("tasks", "train", "written")] == [c["tasks"], c["train"], c["written"]]
        bars = section.locator("svg.chart g title").all_text_contents()
        assert sorted(t.split(":")[0] for t in bars) == sorted(summary)

        mixing = page.locator("#mixing table")
        for name, entry in manifest.tasks.items():
            cells = dict(zip(mixing.locator("thead th").all_inner_texts(), mixing.locator("tr", has_text=name).locator("td").all_inner_texts()))
            assert cells["collection"] == entry.collection and float(cells["rate"]) == pytest.approx(entry.rate, rel=1e-3)
            assert int(cells["mixing weight"]) == entry.mixing_weight
        assert log.errors == []
        section.scroll_into_view_if_needed()
        assert screenshot(page, "report-collections").stat().st_size > 10_000
