"""flanforge: build FLAN-style instruction-tuning corpora with Apache Beam.

This file is also what Dataflow stages to its workers (`--setup_file ./setup.py`), so the
runtime requirements below are exactly what a worker installs.
"""
from setuptools import setup

# The folders at the repository root are the subpackages of one `flanforge` namespace, so an
# install never puts generic names such as `training` or `schemas` on sys.path.
PACKAGE_DIRS = {
    "flanforge.beam_pipelines": "beam_pipelines",
    "flanforge.beam_pipelines.sources": "beam_pipelines/sources",
    "flanforge.beam_pipelines.importers": "beam_pipelines/importers",
    "flanforge.beam_pipelines.stats": "beam_pipelines/stats",
    "flanforge.beam_pipelines.studio": "beam_pipelines/studio",
    "flanforge.schemas": "schemas",
    "flanforge.training": "training",
    "flanforge.templates": "templates",
}

setup(
    name="flanforge",
    version="0.1.0",
    description="Build FLAN-style instruction-tuning corpora with Apache Beam.",
    python_requires=">=3.11",
    packages=list(PACKAGE_DIRS),
    package_dir=PACKAGE_DIRS,
    package_data={
        "flanforge.schemas": ["*.json"],
        "flanforge.templates": ["*.yaml", "**/*.yaml"],
        "flanforge.beam_pipelines.studio": ["static/*"],
    },
    # Pinned together: this set resolves with no conflict on Python 3.11 (apache-beam 2.77 caps
    # pyarrow<26, protobuf<7, numpy<2.5). Dataflow workers install exactly these.
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "pyarrow==25.0.1",
        "datasets==5.2.0",
        "jinja2==3.1.6",
        "protobuf==6.33.6",  # tf.train.Example written and read without TensorFlow (schemas/tfexample.py)
        "google-crc32c==1.9.0",  # TFRecord framing
        "numpy==2.4.6",
        "google-cloud-storage==3.17.1",
        "pyyaml==6.0.3",
        "jsonschema==4.26.0",
        "xxhash==4.1.0",
        "orjson==3.13.0",  # JSON Lines sources parse ~3x faster (falls back to json where they differ)
        "tqdm==4.70.1",  # the progress line of local builds (already required by datasets)
        "regex==2026.11.19",  # regex_replace in templates: a per-call timeout against catastrophic patterns
        "sacremoses==0.2.0",  # the detokenize template filter (Moses detokenizer)
    ],
    extras_require={
        # The trainer; also installable alone on an accelerator machine (see docs/TRAINING.md).
        "train": [
            "tensorflow==2.21.0",  # the trainer's default Keras backend and its tf.data reader
            "keras==3.15.1",
            "keras-hub==0.32.0",
            "sentencepiece==0.2.3",
            "tokenizers==0.23.3",
            "rouge-score==0.1.2",
            "sacrebleu==2.6.0",
            "tensorboardX==2.6.5",
        ],
        # `flanforge studio` (docs/STUDIO.md): a local web app; kept out of what Dataflow workers install
        "studio": ["starlette==1.10.0", "uvicorn==0.55.0", "ruamel.yaml==0.19.1"],
        # duckdb and polars: tests/beam_pipelines/test_readers.py reads a built corpus with them;
        # playwright drives Debian's chromium in the browser tests (tests/browser.py)
        "test": [
            "tensorflow==2.21.0", "pytest==9.2.0", "hypothesis==6.170.15", "gcp-storage-emulator==2026.7.19",
            "duckdb==2.0.1", "polars==2.1.0", "playwright==1.64.1",
            "starlette==1.10.0", "uvicorn==0.55.0", "ruamel.yaml==0.19.1",
        ],
        # benchmarks/: the plain-script baseline and the charts of docs/PERFORMANCE.md
        "bench": ["matplotlib==3.11.2", "pandas==3.1.1"],
    },
    entry_points={"console_scripts": ["flanforge=flanforge.beam_pipelines.cli:main"]},
)
