"""The report of a small real corpus in headless Chromium: it loads offline without a console
error, names every cluster, keeps a hostile record inert, and its tables sort."""
from __future__ import annotations

from pathlib import Path

import pytest
from browser import browser_page, screenshot
from test_report import SCRIPT_ROW, build_corpus

from flanforge.beam_pipelines.cli import main
from flanforge.schemas.manifest import read_manifest


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[str]]:
    corpus = build_corpus(tmp_path_factory.mktemp("report_browser"))
    assert main(["stats", str(corpus), "--examples", "30"]) == 0  # every echo_title record, the hostile one included
    return corpus / "report.html", sorted(read_manifest(str(corpus)).clusters)


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
        heading.click()
        column = [int(c.replace(",", "")) for c in table.locator("tbody tr td:nth-child(3)").all_inner_texts()]
        assert column == sorted(column, reverse=True) and heading.get_attribute("aria-sort") == "descending"
        heading.click()
        column = [int(c.replace(",", "")) for c in table.locator("tbody tr td:nth-child(3)").all_inner_texts()]
        assert column == sorted(column) and column[0] < column[-1]

        assert log.errors == []
        page.evaluate("window.scrollTo(0, 0)")
        assert screenshot(page, "report-small-corpus").stat().st_size > 10_000
