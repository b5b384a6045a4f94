"""Launching on Dataflow, offline: the up-front checks, the job graph a dry run translates, and the
sdist that `--setup_file` stages to the workers. Nothing here contacts Google Cloud."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from flanforge.beam_pipelines.build import BuildRun, run_build, run_build_cli
from flanforge.beam_pipelines.options import BuildOptions
from flanforge.beam_pipelines.runners import check_launch, dataflow_job_url, dataflow_problem, runner_kind

REPO = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("beam_pipelines", "schemas", "training", "templates")
STAGES = ("Render", "FirstPass", "TopUp", "Deduplicate", "WriteShards", "WriteManifest")
DATAFLOW = [
    "--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1",
    "--temp_location", "gs://my-bucket/tmp", "--setup_file", str(REPO / "setup.py"),
]
BUILD = ["--demo", "--tasks", "rte,cb", "--output", "gs://my-bucket/out", "--max-examples-per-task", "100"]


def without(argv: list[str], flag: str) -> list[str]:
    """argv less one `--flag value` pair."""
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


def problem(*argv: str) -> str | None:
    options = PipelineOptions(list(argv))
    return dataflow_problem(options, options.view_as(BuildOptions).to_config())


@pytest.mark.parametrize(
    "argv, message",
    [
        (without(DATAFLOW, "--project"), "--project is required with --runner DataflowRunner: your Google Cloud project ID, e.g. --project my-project"),
        ([*DATAFLOW, "--project", "123456"], "--project 123456 is not a project ID"),
        (without(DATAFLOW, "--region"), "--region is required with --runner DataflowRunner: the region to run the job in, e.g. --region us-central1"),
        (without(DATAFLOW, "--temp_location"), "--temp_location must be a gs://BUCKET/PATH with --runner DataflowRunner, e.g. --temp_location gs://my-bucket/tmp"),
        ([*DATAFLOW, "--temp_location", "/tmp/beam"], "--temp_location must be a gs://BUCKET/PATH with --runner DataflowRunner (got /tmp/beam)"),
        ([*DATAFLOW, "--temp_location", "gs://B"], "(got gs://B)"),  # not a bucket name Beam accepts, and no path
        (without(DATAFLOW, "--setup_file"), "--setup_file is required with --runner DataflowRunner so workers can install flanforge: pass --setup_file ./setup.py"),
        ([*DATAFLOW, "--setup_file", "nowhere/setup.py"], "--setup_file nowhere/setup.py: no such file; pass flanforge's setup.py, e.g. --setup_file ./setup.py"),
        ([*DATAFLOW, "--template_location", "gs://my-bucket/t"], "--template_location is not supported"),
    ],
)
def test_each_missing_dataflow_option_is_one_line_naming_the_flag(argv, message):
    found = problem(*argv, *BUILD)
    assert found is not None and message in found and "\n" not in found


def test_dataflow_needs_gcs_for_everything_workers_touch(tmp_path):
    local = ["--demo", "--tasks", "rte", "--output", str(tmp_path / "out")]
    assert problem(*DATAFLOW, *local) == (
        f"--output {tmp_path / 'out'} is on this machine, but Dataflow workers write the shards: pass e.g. --output gs://my-bucket/flan2021"
    )
    assert problem(*DATAFLOW, "--source", "rte=data/rte.jsonl", "--output", "gs://my-bucket/out").startswith(
        "--source rte:train=data/rte.jsonl is on this machine"
    )


def test_complete_dataflow_options_pass_including_alternatives_to_setup_file():
    assert problem(*DATAFLOW, *BUILD) is None
    staging_only = [*without(DATAFLOW, "--temp_location"), "--staging_location", "gs://my-bucket/staging"]
    assert problem(*staging_only, *BUILD) is None  # Beam derives the temp location from it
    container = [*without(DATAFLOW, "--setup_file"), "--sdk_container_image", "us-docker.pkg.dev/p/r/flanforge:0.1.0"]
    assert problem(*container, *BUILD) is None


def test_runner_is_recognised_however_beam_accepts_it():
    for spelling in ("DataflowRunner", "dataflow", "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner"):
        assert runner_kind(PipelineOptions(["--runner", spelling])) == "dataflow"
    assert runner_kind(PipelineOptions(["--runner", "DirectRunner"])) == "direct"


def test_cli_refuses_before_touching_the_output(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    code = run_build_cli([*without(DATAFLOW, "--region"), "--demo", "--output", str(out)], io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("flanforge build: --region is required")
    assert (out / "manifest.json").read_text() == "{}"


def test_a_missing_output_bucket_stops_a_local_build_up_front(gcs_emulator, capsys):
    code = run_build_cli(["--demo", "--tasks", "rte", "--output", "gs://no-such-bucket-here/out"], io.StringIO())
    assert code == 2
    assert capsys.readouterr().err == (
        "flanforge build: --output gs://no-such-bucket-here/out: bucket no-such-bucket-here does not exist; "
        "create it with `gcloud storage buckets create gs://no-such-bucket-here`\n"
    )


def test_check_launch_skips_the_bucket_lookup_for_a_dry_run(monkeypatch):
    def unreachable(path: str) -> None:
        raise AssertionError(f"a dry run looked up {path}")

    monkeypatch.setattr("flanforge.beam_pipelines.runners.check_output_location", unreachable)
    options = PipelineOptions([*DATAFLOW, *BUILD, "--dry_run=True"])
    check_launch(options, options.view_as(BuildOptions).to_config())
    with pytest.raises(AssertionError, match="looked up gs://my-bucket/out"):
        options = PipelineOptions([*DATAFLOW, *BUILD])
        check_launch(options, options.view_as(BuildOptions).to_config())


def test_missing_credentials_for_a_gcs_output_is_one_line(monkeypatch):
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(path: str) -> None:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr("flanforge.beam_pipelines.runners.check_output_location", no_credentials)
    options = PipelineOptions(["--demo", "--output", "gs://my-bucket/out"])
    with pytest.raises(ValueError) as e:
        check_launch(options, options.view_as(BuildOptions).to_config())
    assert str(e.value) == (
        "--output gs://my-bucket/out: no Google Cloud credentials found; run `gcloud auth application-default login` "
        "(or set STORAGE_EMULATOR_HOST to use a local emulator)"
    )


def test_job_link_names_region_project_and_job():
    assert dataflow_job_url("2026-12-02_01_02_03-123", "my-project", "us-central1") == (
        "https://console.cloud.google.com/dataflow/jobs/us-central1/2026-12-02_01_02_03-123?project=my-project"
    )


def staged_files(run: BuildRun) -> dict[str, Path]:
    """Staged name -> local file of every artifact the job's environments would upload."""
    files = {}
    for env in run.result.job.proto_pipeline.components.environments.values():
        for artifact in env.dependencies:
            local = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload).path
            staged = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name
            files[staged] = Path(local)
    return files


@pytest.fixture(scope="module")
def dry_run() -> Iterator[BuildRun]:
    """The build translated for Dataflow once (`--dry_run=True`: well-formed options, nothing contacted)."""
    options = PipelineOptions([*DATAFLOW, *BUILD, "--dry_run=True"])
    run = run_build(options.view_as(BuildOptions).to_config(), options)
    yield run
    for folder in {f.parent for f in staged_files(run).values()}:  # Beam leaves its staging folder behind
        shutil.rmtree(folder, ignore_errors=True)


def test_dry_run_translates_every_stage_and_reads_no_manifest(dry_run):
    assert dry_run.manifest is None
    transforms = dry_run.result.job.proto_pipeline.components.transforms.values()
    top_level = {t.unique_name.split("/")[0] for t in transforms}
    assert set(STAGES) <= top_level
    read_render = [t for t in transforms if t.unique_name == "Render/ReadRender"]
    assert len(read_render) == 1  # the read-and-render DoFn is in the graph Dataflow would run, under our label


def test_dry_run_job_carries_our_options_and_stages_our_sdist(dry_run):
    from apache_beam.runners.dataflow.internal import apiclient

    job = dry_run.result.job
    # The environment Dataflow receives, assembled as DataflowApplicationClient.create_job_description does.
    environment = apiclient.Environment(
        packages=[], options=job.options, environment_version="", proto_pipeline_staged_url="gs://my-bucket/tmp/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
    ).proto
    sent = type(environment).to_dict(environment)["sdk_pipeline_options"]["options"]
    assert (sent["output"], sent["tasks"], sent["demo"]) == ("gs://my-bucket/out", "rte,cb", True)
    assert (sent["project"], sent["region"]) == ("my-project", "us-central1")

    sdist = staged_files(dry_run)["workflow.tar.gz"]  # what workers pip-install from --setup_file
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
    assert {"flanforge-0.1.0/setup.py", "flanforge-0.1.0/beam_pipelines/pipeline.py"} <= names


def test_cli_dry_run_says_so_and_leaves_the_previous_output(gcs_emulator, capsys, monkeypatch, tmp_path):
    from google.cloud import storage

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where Beam leaves its staging folder
    bucket = gcs_emulator.new_bucket()
    storage.Client.create_anonymous_client().bucket(bucket).blob("out/manifest.json").upload_from_string("{}")
    out = io.StringIO()
    argv = [*DATAFLOW, "--demo", "--tasks", "rte", "--output", f"gs://{bucket}/out", "--dry_run=True"]
    assert run_build_cli(argv, out) == 0, capsys.readouterr().err
    lines = out.getvalue().splitlines()
    assert lines[0] == f"dry run: the dataflow job was translated, not run; gs://{bucket}/out was left as it was"
    assert lines[1].startswith("  steps: ") and "Render" in lines[1] and "WriteShards" in lines[1] and "Publish" in lines[1]
    assert lines[2] == "  tasks: 1 in 1 clusters (nli)" and lines[3].startswith("  reads: 1 read shards")
    assert lines[4].startswith("  output: train 1 shards per format") and lines[5].startswith("  workers: max ")
    graph = lines[6].removeprefix("  job graph: ")
    assert graph.startswith(str(tmp_path)) and "WriteShards" in open(graph).read()
    assert storage.Client.create_anonymous_client().bucket(bucket).blob("out/manifest.json").download_as_bytes() == b"{}"


def test_dry_run_asks_no_hub_and_sizes_unlistable_sources_as_empty(gcs_emulator, capsys, monkeypatch, tmp_path):
    """--dry_run=True checks the job's shape without data: hub sources are not asked (here asking
    would fail the test), and a source that cannot be listed is named instead of stopping it."""
    from flanforge.beam_pipelines.sources import hub

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(hub, "plan_hub", lambda *a: pytest.fail("a dry run asked the hub"))
    bucket = gcs_emulator.new_bucket()
    out = io.StringIO()
    argv = [*DATAFLOW, "--tasks", "rte,sst2", "--source", f"sst2=gs://{bucket}/missing/*.tsv", "--output", f"gs://{bucket}/out", "--dry_run=True"]
    assert run_build_cli(argv, out) == 0, capsys.readouterr().err
    text = out.getvalue()
    assert "  tasks: 2 in 2 clusters (nli, sentiment)" in text
    assert "not read for this dry run (2 tasks, sized as empty" in text
    assert "rte (a hub dataset (not asked in a dry run))" in text and "sst2 (not listed: " in text


def expected_package_files() -> set[str]:
    """Every module and data file of the four subpackages, plus setup.py."""
    found = {"setup.py"}
    for folder in PACKAGE_FOLDERS:
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".json", ".yaml") and "__pycache__" not in path.parts:
                found.add(path.relative_to(REPO).as_posix())
    return found


def test_sdist_for_setup_file_holds_every_module_spec_and_schema(tmp_path):
    # Built from a clean copy: setuptools also lists whatever a stale *.egg-info/SOURCES.txt in the
    # checkout names, which could hide a file setup.py itself no longer includes.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in PACKAGE_FOLDERS:
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    # The command Beam's stager runs for --setup_file when the `build` package is not installed.
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")], cwd=src, check=True, capture_output=True)
    (sdist,) = (tmp_path / "dist").glob("flanforge-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = expected_package_files()
    assert {"schemas/task_spec.schema.json", "templates/clusters.yaml", "templates/recipes/flan2021.yaml", "templates/nli/rte.yaml"} <= expected
    assert expected - names == set()


def test_templates_are_found_inside_the_package_from_any_directory(tmp_path):
    code = (
        "import flanforge.templates as t, pathlib;"
        "from flanforge.beam_pipelines.catalog import load_catalog;"
        "assert t.TEMPLATES_DIR == pathlib.Path(t.__file__).resolve().parent;"
        "assert (t.TEMPLATES_DIR / 'clusters.yaml').is_file();"
        "print(len(load_catalog().tasks) > 50)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "True\n", result.stderr


def test_a_job_not_waited_for_reports_where_its_manifest_will_appear(tmp_path, templates_dir):
    out = io.StringIO()
    argv = ["--demo", "--templates", str(templates_dir), "--output", str(tmp_path / "o"), "--no_wait_until_finish"]
    assert run_build_cli(argv, out) == 0
    assert out.getvalue() == f"submitted without waiting (--no_wait_until_finish): {tmp_path / 'o' / 'manifest.json'} is written when the job finishes\n"
