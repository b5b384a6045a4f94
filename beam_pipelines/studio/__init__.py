"""`flanforge studio`: write and review task templates in the browser, rendered live on real rows.

    workspace.py      the templates directory: tasks, their files, rows to render on, diff and save
    lint.py           a draft of a task's templates rendered on rows, with validate's findings
    positions.py      the column of a template syntax error
    yaml_roundtrip.py the spec file rewritten with new templates, comments and layout kept
    corpus.py         a built corpus's manifest and records, a page at a time
    app.py            the local web server (Starlette) and its JSON API; static/ is the front end

Templates render only through render.py's CompiledTask in the build's sandbox; nothing here runs
template text any other way.
"""
