"""The `flanforge` command line: validate and preview task specs, build corpora, train on them.

Subcommands import their heavy dependencies (Beam, TensorFlow, Keras) only when they run, so
`flanforge validate` is instant and `flanforge train` works on a machine without Beam.
"""
from __future__ import annotations

import argparse
import os
import sys

from flanforge.beam_pipelines.catalog import SpecError

DESCRIPTION = """\
Build FLAN-style instruction-tuning corpora with Apache Beam.

  flanforge validate                 check every task spec, template and sample row
  flanforge preview rte -n 2         show what a task's templates produce
  flanforge catalog                  the catalog as a Markdown table (docs/CATALOG.md)
  flanforge import promptsource DIR --output OUT
                                     promptsource's prompts (P3) as task specs (docs/PROMPTSOURCE.md)
  flanforge build --demo --output out/demo
                                     build cluster-partitioned TFRecord + Parquet shards
  flanforge build --help             every build flag, Beam's runner options included
  flanforge stats out/demo           an HTML report of a built corpus (out/demo/report.html)
  flanforge studio --templates my_specs
                                     write and review templates in the browser, rendered live
"""

TEMPLATES_HELP = "templates directory (default: the bundled catalog); several, comma-separated, stack in order"

STUDIO_HELP = """Open a local web app (http://127.0.0.1:PORT/, this machine only) to write and review templates:
browse the catalog, see every template of a task rendered on a page of rows as you type (the
spec's samples, a --source file, or the spec's own source), with `flanforge validate`'s findings
next to the line they are about, then save back to the spec file (comments and layout kept; only
when it validates, after showing the diff). It can also page through a built corpus by template.

  flanforge studio                                      the bundled catalog (edits templates/)
  flanforge studio --templates my_specs                 your own specs, or an overlay of them
  flanforge studio --source rte=data/rte/train.jsonl    render on rows of your files as well
  flanforge studio --port 0                             any free port (printed on start)

Templates render in the build's sandbox, with its limits and error messages; the studio writes
only <templates>/<cluster>/<task>.yaml files inside the templates directory.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flanforge", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    v = sub.add_parser("validate", help="check every task spec, template and sample row")
    v.add_argument("--templates", metavar="DIR", help=TEMPLATES_HELP)

    p = sub.add_parser("preview", help="render a task's sample rows through its templates")
    p.add_argument("task", help="task name, e.g. rte")
    p.add_argument("--template", metavar="ID", help="only this template (default: all)")
    p.add_argument("-n", type=int, default=3, metavar="N", help="number of sample rows (default: 3)")
    p.add_argument("--templates", metavar="DIR", help=TEMPLATES_HELP)
    p.add_argument(
        "--source", metavar="PATH[#OPTIONS]",
        help="render the first N rows of this file (or glob) instead of the spec's sample rows, read as "
             "`build --source TASK=PATH` reads it: e.g. an imported promptsource task, which has no samples",
    )

    i = sub.add_parser("import", help="turn another prompt collection into task specs (docs/PROMPTSOURCE.md)")
    i.add_argument("collection", choices=["promptsource"], help="the collection's format")
    i.add_argument("directory", metavar="DIR", help="its templates folder (promptsource: <dataset>[/<subset>]/templates.yaml)")
    i.add_argument("--output", required=True, metavar="OUT", help="a new or empty folder for the specs (then: --templates OUT)")

    c = sub.add_parser("catalog", help="print the catalog as a Markdown table (docs/CATALOG.md)")
    c.add_argument("--write", metavar="FILE", help="write the table to FILE instead of printing it")
    c.add_argument("--templates", metavar="DIR", help=TEMPLATES_HELP)

    sub.add_parser(
        "build",
        help="run the Beam pipeline: read, render, deduplicate, balance, write shards + manifest",
        add_help=False,  # `flanforge build --help` lists Beam's options too (see build.py)
    )
    s = sub.add_parser("stats", help="an HTML report (DIR/report.html) and a summary of a built corpus")
    from flanforge.beam_pipelines.stats.command import add_arguments as add_stats_arguments

    add_stats_arguments(s)
    st = sub.add_parser(
        "studio", help="write and review templates in the browser, rendered live on real rows",
        description=STUDIO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("--templates", metavar="DIR", help="templates directory to edit (default: the bundled catalog)")
    st.add_argument(
        "--source", action="append", metavar="TASK[:SPLIT]=PATH[#OPTIONS]",
        help="rows to render a task's templates on, as `flanforge build --source` takes them (repeatable)",
    )
    st.add_argument("--port", type=int, default=8765, metavar="N", help="port on 127.0.0.1 (default: 8765; 0: any free port)")
    sub.add_parser("train", help="train a model on a built corpus (flanforge train --help)", add_help=False)
    sub.add_parser("evaluate", help="zero-shot evaluation on held-out clusters (flanforge evaluate --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `flanforge` command. Output piped into a reader that stops early (`| head`) ends the
    command quietly, as other command-line tools do, instead of with a BrokenPipeError."""
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python would try to flush stdout again at exit and fail the same way: point it at devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `build` hands its arguments to Beam's PipelineOptions parser, which knows the runner flags.
    if argv and argv[0] == "build":
        from flanforge.beam_pipelines.build import run_build_cli

        return run_build_cli(argv[1:])
    # The trainer parses its own flags and must not import Beam (docs/ARCHITECTURE.md).
    if argv and argv[0] in ("train", "evaluate"):
        from flanforge.training import cli as training_cli

        return training_cli.main(argv)
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            from flanforge.beam_pipelines.validate import run_validate

            return run_validate(args.templates, sys.stdout)
        if args.command == "preview":
            from flanforge.beam_pipelines.validate import run_preview

            return run_preview(args.templates, args.task, args.template, args.n, sys.stdout, source=args.source)
        if args.command == "stats":
            from flanforge.beam_pipelines.stats.command import run_stats

            return run_stats(args, sys.stdout, sys.stderr)
        if args.command == "studio":
            from flanforge.beam_pipelines.config import parse_source_overrides

            try:
                from flanforge.beam_pipelines.studio.app import run_studio
            except ImportError as e:  # the web server's packages are an extra
                print(f"flanforge studio: {e.name} is not installed: pip install 'flanforge[studio]'", file=sys.stderr)
                return 2
            try:
                sources = parse_source_overrides(args.source)
            except ValueError as e:
                print(f"flanforge studio: {e}", file=sys.stderr)
                return 2
            return run_studio(args.templates, sources, args.port)
        if args.command == "import":
            from flanforge.beam_pipelines.importers.promptsource import run_import

            return run_import(args.directory, args.output, sys.stdout)
        if args.command == "catalog":
            from flanforge.beam_pipelines.catalog import load_catalog
            from flanforge.beam_pipelines.catalog_doc import catalog_markdown

            text = catalog_markdown(load_catalog(args.templates))
            if args.write:
                with open(args.write, "w", encoding="utf-8") as f:
                    f.write(text)
            else:
                sys.stdout.write(text)
            return 0
    except SpecError as e:
        print(f"flanforge {args.command}: {e}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
