"""Redraw docs/studio.png: the studio on a copy of the bundled catalog, rte open, its second template
given a syntax error, so the picture shows rendered rows, an error placed by line and column, and a
save refused. Needs the `studio` extra, Playwright and Debian's chromium (tests/browser.py).

    .venv/bin/python docs/studio_screenshot.py
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from flanforge.beam_pipelines.studio.app import bind, create_app, make_server
from flanforge.beam_pipelines.studio.workspace import Workspace
from flanforge.templates import TEMPLATES_DIR

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from browser import chromium_path  # noqa: E402  (the tests' way to find the system Chromium)

BROKEN = "Premise: {{ premise }}\nHypothesis: {{ hypothesis | trim('.') }\n\nIf the premise is true, must the hypothesis be true as well?"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flanforge-docshot-") as tmp:
        templates = Path(tmp) / "templates"
        shutil.copytree(TEMPLATES_DIR, templates)
        sock = bind(0)
        server = make_server(create_app(Workspace(str(templates))))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1440, "height": 1250})
                page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/#/task/rte")
                page.wait_for_selector('#templates .template[data-index="1"] td.inputs')
                page.locator('#templates .template[data-index="1"] textarea.inputs').fill(BROKEN)
                page.wait_for_function("document.querySelector('#save-status').textContent.includes('save refused')")
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(HERE / "studio.png"))
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()
    print(HERE / "studio.png")


if __name__ == "__main__":
    main()
