"""Checks that a build can launch on its runner, made before anything is planned, deleted or submitted.

Beam validates Dataflow's options only inside `Pipeline.run`, i.e. after `flanforge build` has
planned the reads and unpublished the previous output, and some of its fallbacks reach for the
network: a missing or malformed `--temp_location` makes it look for (or create) a default bucket,
a missing `--project` shells out to `gcloud`. So `flanforge build` asks for the few Dataflow
options that matter itself, each missing one reported in one line naming the flag and an example.

`--setup_file` is required rather than defaulted. Beam's own convention is that the user names
how workers get the code (`--setup_file`, `--sdk_container_image`, `--extra_package`); it never
guesses. Guessing here would only work from a source checkout: an installed flanforge has no
setup.py to point at. A missing one otherwise surfaces as `No module named 'flanforge'` on the
workers, many minutes after submission.
"""
from __future__ import annotations

import os
import re
from typing import TextIO

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.runners.runner import PipelineResult

from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.options import BuildOptions
from flanforge.beam_pipelines.publish import output_problem
from flanforge.beam_pipelines.storage import check_output_location, gcs_bucket
from flanforge.schemas.files import is_remote, join_path
from flanforge.schemas.manifest import MANIFEST_NAME

DATAFLOW = "dataflow"
DIRECT = "direct"


def runner_kind(options: PipelineOptions) -> str:
    """The runner's short lower-case name ('dataflow', 'direct', 'flink', ...), however it was spelled.

    Beam accepts `DataflowRunner`, `dataflow` and `dataflowrunner` alike."""
    runner = options.view_as(StandardOptions).runner or ""
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name.rsplit(".", 1)[-1].lower().removesuffix("runner")


def is_translate_only(options: PipelineOptions) -> bool:
    """True for `--dry_run=True`: the job is translated but nothing runs, so nothing is written."""
    return bool(options.view_as(TestOptions).dry_run)


def waits_for_job(options: PipelineOptions) -> bool:
    """False under Beam's `--no_wait_until_finish`: the job is submitted and left running."""
    return not options.view_as(StandardOptions).no_wait_until_finish


def unfinished_note(options: PipelineOptions, output: str) -> str:
    """What to print instead of the summary when the build has not finished here (dry run, not waited for)."""
    if is_translate_only(options):
        return f"dry run: the {runner_kind(options)} job was translated, not run; {output} was left as it was"
    return f"submitted without waiting (--no_wait_until_finish): {join_path(output, MANIFEST_NAME)} is written when the job finishes"


def _is_gcs_path(path: str | None) -> bool:
    """A gs://bucket/object path whose bucket name Beam accepts (a bad one sends Beam hunting for a default bucket)."""
    bucket = gcs_bucket(path or "")
    return bool(bucket) and re.match(PipelineOptionsValidator.GCS_BUCKET, bucket) is not None and path.rstrip("/") != f"gs://{bucket}"


def dataflow_problem(options: PipelineOptions, config: BuildConfig) -> str | None:
    """The first reason this Dataflow launch cannot work, as one line with the fix; None if it can."""
    cloud = options.view_as(GoogleCloudOptions)
    setup = options.view_as(SetupOptions)
    runner = "with --runner DataflowRunner"
    if not cloud.project:
        return f"--project is required {runner}: your Google Cloud project ID, e.g. --project my-project"
    if not re.fullmatch(PipelineOptionsValidator.PROJECT_ID_PATTERN, cloud.project):
        return f"--project {cloud.project} is not a project ID (lower-case letters, digits, hyphens), e.g. --project my-project"
    if not cloud.region:
        return f"--region is required {runner}: the region to run the job in, e.g. --region us-central1"
    if not (_is_gcs_path(cloud.temp_location) or _is_gcs_path(cloud.staging_location)):
        given = f" (got {cloud.temp_location or cloud.staging_location})" if cloud.temp_location or cloud.staging_location else ""
        return f"--temp_location must be a gs://BUCKET/PATH {runner}{given}, e.g. --temp_location gs://my-bucket/tmp"
    if cloud.template_location:
        return "--template_location is not supported: a template run would not clear the previous output first; run flanforge build for each job"
    if setup.setup_file and not os.path.isfile(setup.setup_file):
        return f"--setup_file {setup.setup_file}: no such file; pass flanforge's setup.py, e.g. --setup_file ./setup.py"
    if not (setup.setup_file or setup.extra_packages or options.view_as(WorkerOptions).sdk_container_image):
        return f"--setup_file is required {runner} so workers can install flanforge: pass --setup_file ./setup.py from the repository root"
    if not config.output.startswith("gs://"):
        return f"--output {config.output} is on this machine, but Dataflow workers write the shards: pass e.g. --output gs://my-bucket/flan2021"
    local = sorted(f"{task}:{split}={path}" for task, splits in config.sources.items() for split, path in splits.items() if not is_remote(path))
    if local:
        return f"--source {local[0]} is on this machine, which Dataflow workers cannot read: copy it to gs:// and pass that path"
    return None


def check_launch(options: PipelineOptions, config: BuildConfig) -> None:
    """Raise ValueError (one line) if the build cannot launch as asked; called before planning.

    The output location is checked only when something will be written: a dry run contacts nothing."""
    problem = dataflow_problem(options, config) if runner_kind(options) == DATAFLOW else None
    if problem:
        raise ValueError(problem)

    if not is_translate_only(options):
        from google.auth.exceptions import DefaultCredentialsError

        try:
            check_output_location(config.output)
        except DefaultCredentialsError:
            raise ValueError(
                f"--output {config.output}: no Google Cloud credentials found; run `gcloud auth application-default login` "
                "(or set STORAGE_EMULATOR_HOST to use a local emulator)"
            ) from None
        problem = None if options.view_as(BuildOptions).force else output_problem(config.output)
        if problem:
            raise ValueError(problem)


def dataflow_job_url(job_id: str, project: str, region: str) -> str:
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def announce_job(result: PipelineResult, options: PipelineOptions, err: TextIO) -> None:
    """Name the submitted Dataflow job before waiting on it: Beam logs its link only at INFO, which the CLI does not show."""
    job_id = result.job_id() if callable(getattr(result, "job_id", None)) else None
    if runner_kind(options) == DATAFLOW and job_id:
        cloud = options.view_as(GoogleCloudOptions)
        print(f"submitted Dataflow job {job_id}, waiting for it to finish: {dataflow_job_url(job_id, cloud.project, cloud.region)}", file=err)
