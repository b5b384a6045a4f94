"""`flanforge studio` used as a person uses it: headless Chromium (tests/browser.py) against the real
server (uvicorn, in a thread, on a free port) over a templates directory in tmp_path.

Screenshots of each step go to test-artifacts/ (studio-*.png)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from browser import browser_page, screenshot

from flanforge.beam_pipelines.studio.app import bind, create_app, make_server
from flanforge.beam_pipelines.studio.workspace import Workspace

BROKEN = "Passage: {{ premise }\nClaim: {{ hypothesis }}"
FIXED = "Passage: {{ premise }}\nClaim: {{ hypothesis }}\nIs the claim backed by the passage?"


@pytest.fixture
def studio_url(studio_dir: Path) -> Iterator[str]:
    """The studio over studio_dir, served as `flanforge studio` serves it."""
    sock = bind(0)
    server = make_server(create_app(Workspace(str(studio_dir))))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the studio server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's tests (starting it takes seconds): (page, log), the
    log cleared for each test."""
    with browser_page() as (page, log):
        yield page, log


@pytest.fixture
def tab(browser):
    page, log = browser
    log.errors.clear()
    yield page, log
    page.goto("about:blank")


def first_card(page):
    return page.locator('#templates .template[data-index="0"]')


def test_break_fix_save_and_reload_a_template(tab, studio_url, studio_dir, rte_comment):
    spec = studio_dir / "nli" / "rte.yaml"
    before = spec.read_text()
    page, log = tab
    page.goto(studio_url)
    page.fill("#search", "rte")
    page.click('#tree a[data-task="rte"]')
    page.wait_for_selector('#templates .template[data-index="0"] td.inputs')
    assert page.locator("#task-name").inner_text() == "rte"
    assert "2 inverted" in page.locator("#task-facts").inner_text()

    card = first_card(page)
    card.locator("textarea.inputs").fill(BROKEN)
    error = card.locator(".inputs-findings .syntax-error")
    error.wait_for()
    assert error.inner_text() == "line 1, column 21: unexpected '}'"
    page.wait_for_function("document.querySelector('#save-status').textContent.includes('save refused')")
    assert "not rendered" in card.locator(".stats").inner_text()
    page.click("#review-save")
    page.wait_for_selector("#diff-dialog[open]")
    assert "unexpected '}'" in page.locator("#diff-problems").inner_text()
    assert page.locator("#confirm-save").is_disabled()
    screenshot(page, "studio-broken")
    page.click("#cancel-save")
    assert spec.read_text() == before

    card.locator("textarea.inputs").fill(FIXED)
    page.wait_for_function("document.querySelector('#save-status').textContent.includes('ready to save')")
    assert card.locator(".inputs-findings .syntax-error").count() == 0
    rendered = card.locator("tbody tr").first.locator("td.inputs").inner_text()
    assert rendered.startswith("Passage: ") and "Is the claim backed by the passage?" in rendered
    page.click("#review-save")
    page.wait_for_selector("#diff-dialog[open]")
    assert "+      Is the claim backed by the passage?" in page.locator("#diff").inner_text()
    page.click("#confirm-save")
    page.wait_for_selector("#toast:not([hidden])")
    assert "Saved" in page.locator("#toast").inner_text()

    after = spec.read_text()
    assert "      Is the claim backed by the passage?\n" in after
    assert rte_comment in after and "label in (0, 1)   # the test split ships label -1" in after

    page.reload()
    first_card(page).locator("td.inputs").first.wait_for()
    assert first_card(page).locator("textarea.inputs").input_value() == FIXED
    screenshot(page, "studio-saved")
    assert log.errors == []


def test_add_a_template_and_see_it_render(tab, studio_url):
    page, log = tab
    page.goto(studio_url + "#/task/echo_title")
    page.wait_for_selector("#templates .template td.inputs")
    page.click("#add-template")
    card = page.locator('#templates .template[data-index="3"]')
    assert card.locator("input.tid").input_value() == "echo_title_04"
    card.locator("textarea.inputs").fill("Headline for this text: {{ body }}")
    card.locator("textarea.targets").fill("{{ title }}")
    page.wait_for_function("document.querySelector('#save-status').textContent.includes('ready to save')")
    assert card.locator("tbody tr").first.locator("td.inputs").inner_text().startswith("Headline for this text: The river rose overnight.")
    card.locator("textarea.targets").fill("{{ titel }}")
    card.locator(".template-findings li.warning").first.wait_for()
    assert "'titel', which no row on this page has" in card.locator(".template-findings").inner_text()
    assert log.errors == []


def test_filter_the_task_list_by_collection(tab, two_collections, studio_url):
    page, log = tab
    page.goto(studio_url)
    page.wait_for_selector('#tree a[data-task="rte"]', state="attached")  # in its cluster, folded
    choices = page.locator("#collection-filter option").all_inner_texts()
    assert page.locator("#collection-filter").is_visible() and choices == ["all collections", "dialog (1)", "flan2021 (1)"]
    page.select_option("#collection-filter", "dialog")
    page.locator('#tree a[data-task="echo_title"]').wait_for()
    assert page.locator("#tree a").evaluate_all("links => links.map((a) => a.dataset.task)") == ["echo_title"]
    page.click('#tree a[data-task="echo_title"]')
    page.wait_for_selector("#templates .template td.inputs")
    assert page.locator("#task-collection").inner_text() == "dialog"
    assert "dialog (the spec's collection)" in page.locator("#task-facts").inner_text()
    screenshot(page, "studio-collections")
    page.select_option("#collection-filter", "")
    page.fill("#search", "rte")
    page.click('#tree a[data-task="rte"]')
    page.wait_for_function("document.querySelector('#task-name').textContent === 'rte'")
    assert page.locator("#task-collection").inner_text() == "flan2021"
    assert "flan2021 (by origin: the spec names none)" in page.locator("#task-facts").inner_text()
    assert log.errors == []


def test_review_a_built_corpus_by_template(tab, studio_url, built_corpus):
    page, log = tab
    page.goto(studio_url + "#/corpus")
    page.fill("#corpus-dir", str(built_corpus))
    page.click("#corpus-form button[type=submit]")
    assert page.locator('#corpus-summary tr[data-task="rte"] .badge.collection').inner_text() == "flan2021"
    page.click('#corpus-summary tr[data-task="rte"]')
    page.wait_for_selector("#records-table tbody tr")
    page.select_option("#records-template", "rte_03")
    page.wait_for_function("document.querySelector('#records-title').textContent.includes('of rte_03')")
    ids = page.locator("#records-table tbody tr td:first-child").all_inner_texts()
    assert ids and all(text.startswith("rte_03") for text in ids)
    screenshot(page, "studio-corpus")
    assert log.errors == []
