"""The spec loader on hostile and broken input: it raises only SpecError, one line per problem
naming the file (and the field), in bounded time and memory.

Found by fuzzing: YAML nested ~500 deep raised RecursionError, an alias "billion laughs" ran out
of memory in an error message or when a build fingerprinted the spec (`validate` accepted it), and
names ending in a newline passed the schema. The regression tests load each case in a child
process with a memory limit and a timeout, so that a regression fails instead of hanging the run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flanforge.beam_pipelines.catalog import (
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    MAX_SPEC_VALUES,
    SpecError,
    _load_yaml,
    load_catalog,
    parse_task_spec,
)
from flanforge.templates import TEMPLATES_DIR

REPO = Path(__file__).resolve().parents[2]
RTE_PATH = TEMPLATES_DIR / "nli" / "rte.yaml"
RTE = RTE_PATH.read_text(encoding="utf-8")
RTE_LINES = RTE.splitlines(keepends=True)
MAX_LINE = 300  # characters in a problem line after the file's path and ": "
BUNDLED_TASKS = 74


def alias_bomb(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """a: &a [x, ...], b: &b [*a, ...], ...: `width ** levels` values once expanded."""
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"{indent}{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]\n"]
    for i in range(1, levels):
        refs = ", ".join([f"*{names[i - 1]}"] * width)
        lines.append(f"{indent}{names[i]}: &{names[i]} [{refs}]\n")
    return "".join(lines)


def with_sample(body: str) -> str:
    """rte.yaml with `body` (already indented as a list item) as its first sample."""
    return RTE.replace("samples:\n", "samples:\n" + body, 1)


def check_problems(err: SpecError, path: str) -> None:
    """One line per problem, each naming the file, none longer than the path + MAX_LINE."""
    assert err.problems, "a SpecError with no problems"
    for line in err.problems:
        assert isinstance(line, str)
        assert "\n" not in line and "\r" not in line, repr(line[:500])
        assert line.startswith(f"{path}: "), repr(line[:500])
        assert len(line) <= len(path) + 2 + MAX_LINE, (len(line), line[:500])


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Fail with TimeoutError rather than hang, where a SIGALRM can be used (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_and_fingerprint(path: str) -> None:
    """What `validate` and a build do with a spec file: load, validate, copy and serialise it."""
    spec = parse_task_spec(_load_yaml(path), path)
    json.dumps(dataclasses.asdict(spec), sort_keys=True, default=repr, ensure_ascii=False)


# --- the property test ---------------------------------------------------------------------------

_names = st.sampled_from(["rte\n", "rte\n\n", "\nrte", "rte ", "RTE", "rte\r", "rte\u2028", "", "r" * 5000])


@st.composite
def fuzzed_specs(draw) -> str | bytes:
    lines = list(RTE_LINES)
    kind = draw(
        st.sampled_from(["delete", "duplicate", "nest", "bomb", "unicode", "huge", "top", "name", "bytes", "values", "mixed"])
    )
    at = draw(st.integers(0, len(lines)))
    if kind in ("delete", "mixed"):
        for _ in range(draw(st.integers(1, 20))):
            if lines:
                del lines[draw(st.integers(0, len(lines) - 1))]
    if kind in ("duplicate", "mixed"):
        for _ in range(draw(st.integers(1, 20))):
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines.insert(draw(st.integers(0, len(lines))), lines[i])
    if kind in ("nest", "mixed"):
        depth = draw(st.integers(1, 2000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("- ", "")]))
        nested = opener * depth + "x" + closer * depth
        where = draw(st.sampled_from(["sample", "top", "line"]))
        if where == "sample":
            return with_sample(f"  - {{t: {nested}}}\n") if opener != "- " else with_sample(f"  - t:\n      {nested}\n")
        if where == "top":
            return nested + "\n"
        lines.insert(min(at, len(lines)), f"k: {nested}\n" if opener != "- " else nested + "\n")
    if kind == "bomb":
        levels = draw(st.integers(1, 9))
        where = draw(st.sampled_from(["top", "sample", "after"]))
        if where == "top":
            return alias_bomb(levels)
        if where == "sample":
            return with_sample("  - " + alias_bomb(levels, indent="    ")[4:])
        return RTE + alias_bomb(levels) + f"samples_copy: *{'abcdefghi'[levels - 1]}\n"
    if kind in ("unicode", "mixed"):
        junk = draw(st.text(max_size=200))
        lines.insert(min(at, len(lines)), junk + draw(st.sampled_from(["", "\n"])))
    if kind == "huge":
        size = draw(st.sampled_from([1000, 100_000, MAX_SPEC_BYTES - len(RTE) - 50, MAX_SPEC_BYTES + 1]))
        field = draw(st.sampled_from(["description", "license", "name", "sample", "comment", "key"]))
        big = "y" * size
        if field == "sample":
            return with_sample(f"  - {{premise: {big}, hypothesis: h, label: 0}}\n")
        if field == "comment":
            return RTE + "# " + big + "\n"
        if field == "key":
            return with_sample(f"  - {{{big}: 1}}\n")
        return RTE.replace(f"{field}: ", f"{field}: {big} #", 1)
    if kind == "top":
        return draw(st.sampled_from(["", "~\n", "- a\n- b\n", "42\n", "just text\n", "[1, 2]\n", "---\n...\n", "a: 1\n---\nb: 2\n"]))
    if kind == "name":
        name = draw(_names)
        field = draw(st.sampled_from(["name", "cluster", "template", "identifier", "split"]))
        quoted = json.dumps(name)
        if field == "name":
            return RTE.replace("name: rte\n", f"name: {quoted}\n", 1)
        if field == "cluster":
            return RTE.replace("cluster: nli\n", f"cluster: {quoted}\n", 1)
        if field == "template":
            return RTE.replace("- id: rte_01\n", f"- id: {quoted}\n", 1)
        if field == "identifier":
            return RTE.replace("derived:\n", f"derived:\n  {quoted}: premise\n", 1) if "derived:\n" in RTE else RTE + f"derived:\n  {quoted}: premise\n"
        return RTE.replace("    train: train\n", f"    {quoted}: train\n", 1)
    if kind == "bytes":
        data = bytearray(RTE.encode("utf-8"))
        for _ in range(draw(st.integers(1, 10))):
            data.insert(draw(st.integers(0, len(data))), draw(st.integers(0x80, 0xFF)))
        return bytes(data)
    if kind == "values":
        n = draw(st.sampled_from([10, MAX_SPEC_VALUES // 2, MAX_SPEC_VALUES + 10]))
        return with_sample("  - {t: [" + ",".join(["1"] * n) + "]}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzzed_specs")


FUZZ_STATS = {"examples": 0, "accepted": 0, "slowest_s": 0.0, "total_s": 0.0}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=fuzzed_specs())
def test_fuzzed_specs_raise_only_spec_error_quickly(fuzz_dir: Path, text: str | bytes) -> None:
    path = fuzz_dir / "nli" / "rte.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    start = time.perf_counter()
    with watchdog(10):
        try:
            load_and_fingerprint(str(path))
            FUZZ_STATS["accepted"] += 1
        except SpecError as e:
            check_problems(e, str(path))
    elapsed = time.perf_counter() - start
    FUZZ_STATS["examples"] += 1
    FUZZ_STATS["total_s"] += elapsed
    FUZZ_STATS["slowest_s"] = max(FUZZ_STATS["slowest_s"], elapsed)
    assert elapsed < 2.0, f"{elapsed:.2f} s for one spec"


def test_fuzz_ran(request) -> None:
    """Reports how many fuzzed specs ran (pytest -s shows it); runs after the property test."""
    if FUZZ_STATS["examples"]:
        print(
            f"\nfuzzed specs: {FUZZ_STATS['examples']} examples, {FUZZ_STATS['accepted']} accepted, "
            f"{FUZZ_STATS['total_s']:.1f} s loading, slowest {FUZZ_STATS['slowest_s']:.2f} s"
        )


# --- regressions, each in a child process with a memory limit and a timeout ----------------------

CHILD = textwrap.dedent(
    """\
    import dataclasses, json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from flanforge.beam_pipelines.catalog import SpecError, _load_yaml, load_catalog, parse_task_spec
    what, path = sys.argv[1], sys.argv[2]
    try:
        if what == "catalog":
            load_catalog(path)
        else:
            spec = parse_task_spec(_load_yaml(path), path)
            json.dumps(dataclasses.asdict(spec), sort_keys=True, default=repr, ensure_ascii=False)
    except SpecError as e:
        for line in e.problems:
            print("SpecError " + line)
    else:
        print("OK")
    """
)


def run_child(what: str, path: Path) -> list[str]:
    """The child's output lines; a crash, traceback, MemoryError or timeout fails the test."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, what, str(path)],
            capture_output=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            timeout=30,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path} ran past 30 s")
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    assert done.stderr == "", done.stderr[-3000:]
    return done.stdout.splitlines()


def spec_error_line(path: Path, text: str | bytes) -> str:
    """Load `text` as `path` in a child process; the one SpecError line it printed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    lines = run_child("spec", path)
    assert len(lines) == 1 and lines[0].startswith(f"SpecError {path}: "), lines[:5]
    line = lines[0].removeprefix("SpecError ")
    assert len(line) <= len(str(path)) + 2 + MAX_LINE, line
    return line


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(alias_bomb(), id="top-level"),
        pytest.param(with_sample("  - " + alias_bomb(indent="    ")[4:]), id="in-a-sample"),
        pytest.param(RTE + alias_bomb() + "extra: *i\n", id="unknown-key"),
        pytest.param(RTE.replace("samples:\n", "samples: &s\n", 1) + "more: *s\n", id="one-alias"),
        pytest.param("a: &a [*a]\n", id="recursive"),
    ],
)
def test_alias_bombs_are_refused(tmp_path: Path, text: str) -> None:
    line = spec_error_line(tmp_path / "nli" / "rte.yaml", text)
    assert "aliases (*" in line and "are not allowed in specs" in line


@pytest.mark.parametrize(
    "nested",
    [
        pytest.param("[" * 2000 + "]" * 2000, id="flow-lists"),
        pytest.param("{a: " * 2000 + "1" + "}" * 2000, id="flow-mappings"),
        pytest.param("\n" + "".join("      " + "  " * i + "- \n" for i in range(500)) + "      " + "  " * 500 + "x", id="block-lists"),
        pytest.param("\n" + "".join("      " + " " * i + "a:\n" for i in range(1000)) + "      " + " " * 1000 + "a: 1", id="block-mappings"),
        pytest.param("[" * (MAX_SPEC_DEPTH - 2) + "]" * (MAX_SPEC_DEPTH - 2), id="one-too-deep"),
    ],
)
def test_deep_nesting_is_refused(tmp_path: Path, nested: str) -> None:
    line = spec_error_line(tmp_path / "nli" / "rte.yaml", with_sample(f"  - t: {nested}\n"))
    assert f"nested deeper than {MAX_SPEC_DEPTH} levels" in line


def test_deepest_allowed_nesting_loads(tmp_path: Path) -> None:
    path = tmp_path / "nli" / "rte.yaml"
    path.parent.mkdir(parents=True)
    depth = MAX_SPEC_DEPTH - 3  # the spec's mapping, samples and the sample row are three levels
    path.write_text(with_sample(f"  - t: {'[' * depth}1{']' * depth}\n"))
    assert run_child("spec", path) == ["OK"]


@pytest.mark.parametrize(
    "old, new, where",
    [
        ("name: rte\n", 'name: "rte\\n"\n', "field name"),
        ("cluster: nli\n", 'cluster: "nli\\n"\n', "field cluster"),
        ("- id: rte_01\n", '- id: "rte_01\\n"\n', "template rte_01\\n field id"),
        ("    train: train\n", '    "train\\n": train\n', "field source/splits"),
    ],
)
def test_names_with_a_trailing_newline_are_refused(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert old in RTE
    line = spec_error_line(tmp_path / "nli" / "rte.yaml", RTE.replace(old, new, 1))
    assert f": {where}: " in line and "does not match" in line, line


def test_identifier_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(RTE)
    data["derived"] = {**(data.get("derived") or {}), "premise_x\n": "premise"}
    with pytest.raises(SpecError, match=r"does not match") as err:
        parse_task_spec(data, "rte.yaml")
    check_problems(err.value, "rte.yaml")


def test_a_file_over_the_size_limit_is_refused_unparsed(tmp_path: Path) -> None:
    line = spec_error_line(tmp_path / "nli" / "rte.yaml", RTE + "# " + "x" * MAX_SPEC_BYTES + "\n")
    assert f"larger than {MAX_SPEC_BYTES:,} bytes" in line


def test_too_many_values_are_refused(tmp_path: Path) -> None:
    line = spec_error_line(tmp_path / "nli" / "rte.yaml", with_sample("  - {t: [" + ",".join(["1"] * MAX_SPEC_VALUES) + "]}\n"))
    assert f"more than {MAX_SPEC_VALUES:,} values" in line


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(RTE.encode("utf-8").replace(b"name: rte", b"name: r\xfft\xe9", 1), "not UTF-8 text: byte 0xff", id="not-utf8"),
        pytest.param(RTE + "broken: [1, 2\n", "not valid YAML: line", id="syntax"),
        pytest.param(RTE + "x: !!python/object:os.system {}\n", "not valid YAML", id="python-tag"),
        pytest.param(with_sample("  - {when: 2001-13-45}\n"), "not valid YAML: ValueError", id="bad-date"),
        pytest.param(with_sample("  - {n: " + "9" * 5000 + "}\n"), "not valid YAML: ValueError", id="5000-digit-int"),
        pytest.param(with_sample("  - {1: x, premise: p}\n"), "field samples/0: key 1 (int) is not a string", id="int-key"),
        pytest.param(with_sample("  - {yes: x}\n"), "key True (bool) is not a string", id="bool-key"),
        pytest.param(RTE.replace("license: ", "license: [", 1).replace("\nmetric", "]\nmetric", 1), "field license", id="wrong-type"),
        pytest.param("a: 1\n---\nb: 2\n", "not valid YAML", id="two-documents"),
        pytest.param("- a\n- b\n", "top level: a task spec must be a mapping, got list", id="a-list"),
        pytest.param(RTE.replace("inverted: true", "inverted: " + "z" * 500_000, 1), "is not of type 'boolean'", id="huge-value"),
    ],
)
def test_other_broken_specs_give_one_short_line(tmp_path: Path, text: str | bytes, expected: str) -> None:
    assert spec_error_line(tmp_path / "nli" / "rte.yaml", text).count(expected) == 1


def test_a_catalog_of_broken_specs_names_every_file_once(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "nli").mkdir(parents=True)
    (root / "clusters.yaml").write_bytes((TEMPLATES_DIR / "clusters.yaml").read_bytes())
    broken = {
        "bomb": alias_bomb(),
        "deep": with_sample("  - t: " + "[" * 2000 + "]" * 2000 + "\n"),
        "big": RTE + "# " + "x" * MAX_SPEC_BYTES + "\n",
        "newline": RTE.replace("name: rte\n", 'name: "newline\\n"\n', 1),
    }
    for name, text in broken.items():
        (root / "nli" / f"{name}.yaml").write_text(text)
    (root / "nli" / "rte.yaml").write_text(RTE)
    lines = run_child("catalog", root)
    assert len(lines) == len(broken), lines
    for name, line in zip(sorted(broken), lines):
        path = root / "nli" / f"{name}.yaml"
        assert line.startswith(f"SpecError {path}: ") and len(line) < len(str(path)) + 20 + MAX_LINE, line


@pytest.mark.parametrize(
    "clusters",
    [
        "clusters: {nli: just text}\n",
        "clusters: {nli: {description: d}}\nholdout_overlaps: [[[nli], nli]]\n",
        "clusters: {nli: {description: d}}\nholdout_overlaps: 3\n",
        'clusters: {"nli\\n": {description: d}}\n',
        alias_bomb(),
    ],
)
def test_broken_clusters_file_is_one_spec_error(tmp_path: Path, clusters: str) -> None:
    root = tmp_path / "templates"
    (root / "nli").mkdir(parents=True)
    (root / "clusters.yaml").write_text(clusters)
    (root / "nli" / "rte.yaml").write_text(RTE)
    lines = run_child("catalog", root)
    assert len(lines) == 1 and lines[0].startswith(f"SpecError {root / 'clusters.yaml'}: "), lines


def test_parse_task_spec_is_bounded_on_python_data_too() -> None:
    """Data not from a file (shared or cyclic Python objects) is refused without expanding it."""
    data = yaml.safe_load(RTE)
    level: list = ["x"] * 9
    for _ in range(12):  # 9 ** 12 values if expanded
        level = [level] * 9
    data["samples"] = [{"t": level}]
    with watchdog(10), pytest.raises(SpecError, match="nested deeper|more than") as err:
        parse_task_spec(data, "rte.yaml")
    check_problems(err.value, "rte.yaml")
    data = yaml.safe_load(RTE)
    cycle: list = []
    cycle.append(cycle)
    data["samples"] = [{"t": cycle}]
    with watchdog(10), pytest.raises(SpecError, match=f"nested deeper than {MAX_SPEC_DEPTH} levels") as err:
        parse_task_spec(data, "rte.yaml")
    check_problems(err.value, "rte.yaml")


# --- what is accepted stays cheap, and the bundled catalog is unchanged --------------------------


def maximal_spec() -> str:
    """rte.yaml grown to just under both MAX_SPEC_VALUES and MAX_SPEC_BYTES."""
    used = sum(1 for e in yaml.parse(RTE) if isinstance(e, (yaml.ScalarEvent, yaml.CollectionStartEvent)))
    rows = (MAX_SPEC_VALUES - used - 10) // 7  # a row: its mapping, 3 keys and 3 values
    text = with_sample("".join(f"  - {{premise: p{i}, hypothesis: h{i}, label: {i % 2}}}\n" for i in range(rows)))
    room = MAX_SPEC_BYTES - len(text.encode("utf-8")) - 100
    assert room > 0
    return text.replace("license: ", "license: " + "d" * room + " ", 1)


def test_a_maximal_accepted_spec_loads_and_fingerprints_quickly(tmp_path: Path) -> None:
    from flanforge.beam_pipelines.incremental import task_fingerprint
    from flanforge.beam_pipelines.layout import ShardLayout
    from flanforge.beam_pipelines.render import RenderSettings

    path = tmp_path / "nli" / "rte.yaml"
    path.parent.mkdir()
    path.write_text(maximal_spec())
    assert MAX_SPEC_BYTES - 200 < path.stat().st_size <= MAX_SPEC_BYTES
    with watchdog(20):
        start = time.perf_counter()
        spec = parse_task_spec(_load_yaml(str(path)), str(path))
        loaded = time.perf_counter()
        fingerprint = task_fingerprint(spec, [], RenderSettings(demo=True), "test", layout=ShardLayout({}), quotas={})
        done = time.perf_counter()
    assert len(spec.samples) > MAX_SPEC_VALUES // 8 and len(fingerprint) == 32
    assert loaded - start < 3.0, f"load {loaded - start:.2f} s"  # ~1 s here; it is per value, and values are bounded
    assert done - loaded < 0.5, f"fingerprint {done - loaded:.2f} s"


def test_bundled_catalog_loads_unchanged() -> None:
    catalog = load_catalog()
    assert len(catalog.tasks) == BUNDLED_TASKS
    for spec in catalog.tasks.values():
        data = yaml.safe_load(Path(spec.path).read_text(encoding="utf-8"))
        assert spec.name == data["name"] and spec.samples == tuple(data["samples"])
        assert [t.id for t in spec.templates] == [t["id"] for t in data["templates"]]


def test_flanforge_validate_is_ok() -> None:
    cli = Path(sys.executable).with_name("flanforge")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "flanforge.beam_pipelines.cli"]
    done = subprocess.run([*command, "validate"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith(f"ok: {BUNDLED_TASKS} tasks"), done.stdout[-3000:]
