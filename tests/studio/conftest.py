"""Fixtures of the studio tests: a templates directory in tmp_path whose rte spec carries hand-written
comments (the round trip must keep them), and a client of the studio's API over it."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import pytest
from starlette.testclient import TestClient

from flanforge.beam_pipelines.studio.app import create_app
from flanforge.beam_pipelines.studio.workspace import Workspace

TEMPLATE_COMMENT = "  # rte_02 puts both texts first, labelled\n"


@pytest.fixture
def studio_dir(templates_dir: Path) -> Path:
    """conftest's templates_dir (a copy in tmp_path: nli/rte, summarization/echo_title) with a
    comment above rte_02 as well as the bundled spec's own comments."""
    rte = templates_dir / "nli" / "rte.yaml"
    text = rte.read_text()
    assert "  - id: rte_02\n" in text
    rte.write_text(text.replace("  - id: rte_02\n", TEMPLATE_COMMENT + "  - id: rte_02\n", 1))
    return templates_dir


@pytest.fixture
def two_collections(studio_dir: Path) -> Path:
    """studio_dir with echo_title in collection `dialog`, named by its spec; rte stays in the one
    its origin gives it (flan2021, catalog.default_collection)."""
    echo = studio_dir / "summarization" / "echo_title.yaml"
    text = echo.read_text()
    assert "cluster: summarization\n" in text and "collection:" not in text
    echo.write_text(text.replace("cluster: summarization\n", "cluster: summarization\ncollection: dialog\n", 1))
    return studio_dir


@pytest.fixture
def rte_comment() -> str:
    """The comment line studio_dir adds above rte_02."""
    return TEMPLATE_COMMENT


def _client(templates: Path | None, sources: dict[str, dict[str, str]] | None = None) -> TestClient:
    workspace = Workspace(None if templates is None else str(templates), sources)
    return TestClient(create_app(workspace), base_url="http://127.0.0.1")


@pytest.fixture
def make_client() -> Callable[..., TestClient]:
    """(templates dir, --source mapping) -> a client of a studio over them."""
    return _client


@pytest.fixture
def client(studio_dir: Path) -> TestClient:
    return _client(studio_dir)


@pytest.fixture(scope="session")
def built_corpus(tmp_path_factory) -> Path:
    """A real demo build of the bundled rte and sst2 (the DirectRunner, a few seconds), shared by
    the API and browser tests of corpus review."""
    from flanforge.beam_pipelines.build import run_build_cli  # imports Beam: only when a test needs a corpus

    out = tmp_path_factory.mktemp("corpus") / "demo"
    code = run_build_cli(["--demo", "--tasks", "rte,sst2", "--output", str(out), "--no-progress"], io.StringIO(), io.StringIO())
    assert code == 0
    return out
