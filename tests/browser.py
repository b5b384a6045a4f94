"""Headless Chromium for the browser tests: Debian's `chromium` package driven by Playwright.

Playwright's own browser download is not available on our machines, so the tests launch the
system Chromium by path. Every page records its console errors and uncaught exceptions, so a test
can assert that a page loaded cleanly, and `screenshot` keeps a PNG under test-artifacts/ (CI keeps
that folder). Without Chromium the browser tests fail under CI=true and skip, saying why, elsewhere.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ARTIFACTS = Path(os.environ.get("FLANFORGE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def chromium_path() -> str:
    """$FLANFORGE_CHROMIUM, else `chromium` on PATH; fails (CI) or skips (elsewhere) when absent."""
    found = os.environ.get("FLANFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = "no Chromium: install Debian's package (apt-get install chromium) or set FLANFORGE_CHROMIUM"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


class PageLog:
    """Console errors and page exceptions seen by one page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page) -> None:
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@contextmanager
def browser_page(viewport: tuple[int, int] = (1280, 900)) -> Iterator[tuple[object, PageLog]]:
    """(page, log): a fresh page in headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            log = PageLog()
            log.attach(page)
            yield page, log
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/<name>.png and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
