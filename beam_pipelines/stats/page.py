"""The report page: CorpusStats -> one self-contained HTML document.

It opens offline: styles and the one small script (click a column heading to sort a table) are
inline, charts are inline SVG (charts.py), and nothing is fetched. Record text and every name in
the manifest are untrusted, so everything is escaped on the way in; on top of that the page's
Content-Security-Policy lets only its own script run (pinned by its sha256) and loads nothing, so
markup that slipped through would still be inert. The page is a pure function of the stats (no
clock), so the same corpus gives the same bytes.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from html import escape
from typing import Any, Callable, Iterable, Mapping, Sequence

from flanforge.beam_pipelines.stats.charts import bar_chart, count_text, histogram_chart
from flanforge.beam_pipelines.stats.gather import CorpusStats
from flanforge.beam_pipelines.stats.histogram import MEASURES, TextLengths
from flanforge.schemas.manifest import Manifest, TaskEntry, mixing_rates

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 0 24px 48px; color: #1d232b; }
h1 { font-size: 22px; margin: 24px 0 4px; } h2 { font-size: 18px; margin: 36px 0 8px; border-bottom: 1px solid #d8dde3; }
h3 { font-size: 15px; margin: 20px 0 6px; }
nav { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #d8dde3; z-index: 1; }
nav a { margin-right: 14px; color: #2f5f8f; text-decoration: none; }
.note { color: #55606c; } .problems { background: #fff4e5; border: 1px solid #f0b35b; padding: 8px 14px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e9ed; padding: 3px 10px 3px 4px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; } .scroll th { position: sticky; top: 0; }
table.sortable th { cursor: pointer; } th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { max-height: 520px; overflow: auto; display: inline-block; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; } figure { margin: 0; } figcaption { font-weight: 600; font-size: 13px; }
svg.chart { display: block; margin: 6px 0; } svg.chart text { font: 11px system-ui, sans-serif; fill: #1d232b; } svg.chart .bar { fill: #4a7db3; }
svg.chart g:hover .bar { fill: #22507f; } svg.chart .baseline { stroke: #8a949e; } svg.chart .axis { fill: #55606c; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f8fa; border: 1px solid #e6e9ed; padding: 6px 8px; margin: 2px 0 8px; max-height: 260px; overflow: auto; }
.example { border-left: 3px solid #4a7db3; padding-left: 10px; margin: 10px 0 14px; }
"""

# Click a heading to sort by that column: numbers (data-sort) by value, largest first, text A-Z.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headings = table.querySelectorAll("th");
  headings.forEach(function (th, column) {
    th.addEventListener("click", function () {
      var numeric = th.classList.contains("num");
      var state = th.getAttribute("aria-sort");
      var descending = state ? state === "ascending" : numeric;
      headings.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        var order = numeric ? Number(x.dataset.sort) - Number(y.dataset.sort) : x.textContent.localeCompare(y.textContent);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def content_security_policy(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"


@dataclass(frozen=True)
class Number:
    """A numeric table cell: sorts by value, shows `text` (a share, a mean) or the value with commas."""

    value: float
    text: str = ""


Cell = str | int | Number | None  # None: not counted (shown as –, sorts lowest)


def cell(value: Cell) -> str:
    if value is None:
        return '<td class="num" data-sort="-1">–</td>'
    if isinstance(value, Number):
        return f'<td class="num" data-sort="{value.value}">{escape(value.text or f"{value.value:,}")}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-sort="{value}">{value:,}</td>'
    return f"<td>{escape(value)}</td>"


def table(headings: Sequence[str], rows: Iterable[Sequence[Cell]], *, numeric: Sequence[bool], scroll: bool = False) -> str:
    head = "".join(f'<th class="num">{escape(h)}</th>' if n else f"<th>{escape(h)}</th>" for h, n in zip(headings, numeric, strict=True))
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    html = f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{html}</div>' if scroll else html


def percent_text(fraction: float) -> str:
    return f"{fraction:.1%}"


def share(part: float, whole: float) -> Number:
    fraction = part / whole if whole else 0.0
    return Number(fraction, percent_text(fraction))


SCROLL_BARS = 25  # a chart with more bars scrolls in its own box, as the long tables do


def bars(items: Sequence[tuple[str, float]], *, caption: str, value_text: Callable[[float], str] = count_text) -> str:
    chart = bar_chart(items, caption=caption, value_text=value_text)
    return f'<div class="scroll">{chart}</div>' if len(items) > SCROLL_BARS else chart


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def setting_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def settings_table(settings: Mapping[str, Any]) -> str:
    """Key/value pairs of a config-like object, by key; other values than text as compact JSON."""
    return table(("setting", "value"), [(str(k), setting_text(v)) for k, v in sorted(settings.items())], numeric=(False, False))


def p(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{escape(text)}</p>'


def written(counts: Mapping[str, int]) -> int:
    return counts.get("written", 0)


def rate_text(rate: float) -> str:
    """A rate or a recipe weight to 4 significant digits: a task's rate in a build of thousands of
    tasks is ~1e-4, which a fixed number of decimals (or a percentage) would show as 0."""
    return f"{rate:.4g}"


def figure(value: Any) -> Cell:
    """A number from the manifest's collections as a sortable cell (floats as rate_text); None, a
    collection without a recipe weight, as –; anything else (a newer manifest's) as compact JSON."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if isinstance(value, int) else Number(value, rate_text(value))
    return setting_text(value)


def collection_heading(stats: CorpusStats) -> tuple[str, ...]:
    """The per-task tables' collection column, absent for a manifest older than collections."""
    return ("collection",) if stats.manifest.collections else ()


def collection_cell(stats: CorpusStats, entry: TaskEntry) -> tuple[str, ...]:
    return (entry.collection,) if stats.manifest.collections else ()


def task_rates(m: Manifest) -> dict[str, float]:
    """task -> its share of training (tasks without one left out): the manifest's `rate`, or, in a
    manifest older than rates, what the build would have recorded then: the examples-proportional
    share of its mixing weight, by the same function."""
    if m.collections:
        return {t: e.rate for t, e in m.tasks.items() if e.rate > 0}
    return mixing_rates({t: e.mixing_weight for t, e in m.tasks.items()}, {})


def rate_number(rate: float) -> Number:
    return Number(rate, rate_text(rate))


# The build settings that shape a corpus, shown up front (the whole config is one click away).
OVERVIEW_SETTINGS = (
    "recipe", "seed", "formats", "template_mode", "options_variants", "few_shot", "max_examples_per_task",
    "mixing_rate_cap", "max_error_rate", "near_dedup", "decontaminate", "demo",
)


def overview(stats: CorpusStats) -> str:
    m = stats.manifest
    config = m.config
    per_split: dict[str, int] = {}
    for entry in m.tasks.values():
        for split, n in entry.written_by_split.items():
            per_split[split] = per_split.get(split, 0) + n
    formats: dict[str, list[int]] = {}
    for s in m.shards:
        formats.setdefault(s.format, []).append(s.bytes)
    splits = ", ".join(f"{split} {n:,}" for split, n in sorted(per_split.items()))
    shards = "; ".join(f"{fmt}: {len(sizes):,} shards, {sum(sizes):,} bytes" for fmt, sizes in sorted(formats.items()))
    summary = {
        "tasks": f"{len(m.tasks):,} in {len(m.clusters):,} clusters" + (f" (asked for: {', '.join(config['tasks'])})" if config.get("tasks") else ""),
        "clusters": ", ".join(m.clusters),
        "holdout clusters": ", ".join(m.holdout_clusters) or "none",
        "excluded with them": ", ".join(m.excluded_clusters) or "none",
        "records written": f"{written(stats.totals):,}" + (f" ({splits})" if splits else ""),
        "shards": shards or "none",
        "dead letters": f"{sum(d.rows for d in m.dead_letters):,} rows in {len(m.dead_letters):,} files",
        "flanforge": m.flanforge_version,
    }
    summary.update({key: setting_text(config[key]) for key in OVERVIEW_SETTINGS if key in config})
    return (
        table(("build", ""), list(summary.items()), numeric=(False, False))
        + f"<details><summary>Full build config</summary><pre>{escape(json_text(config))}</pre></details>"
    )


def problems_box(stats: CorpusStats) -> str:
    if not stats.problems:
        return ""
    items = "".join(f"<li>{escape(problem)}</li>" for problem in stats.problems)
    return f'<div class="problems"><strong>The shards do not match the manifest:</strong><ul>{items}</ul></div>'


def accounting(stats: CorpusStats) -> str:
    counters = stats.counters
    present = [c for c in counters if c in stats.totals]
    missing = [c for c in counters if c not in stats.totals]
    parts = [
        p("Per-task counters in the order records flow through the build (COUNTERS in schemas/manifest.py): "
          "every template application ends up written or in exactly one of the counters that remove it. "
          "– is a counter this build did not keep" + (f" ({', '.join(missing)})." if missing else ".")),
        bars([(c, stats.totals[c]) for c in present], caption="totals per counter"),
        "<h3>Per cluster</h3>",
        table(
            ("cluster", "tasks", *counters),
            [(c, len(stats.manifest.clusters[c]), *(counts.get(n) for n in counters)) for c, counts in stats.by_cluster.items()],
            numeric=(False, True, *[True] * len(counters)),
            scroll=True,
        ),
        "<h3>Per task</h3>",
        table(
            ("task", "cluster", *collection_heading(stats), *counters),
            [(t, e.cluster, *collection_cell(stats, e), *(e.counts.get(n) for n in counters)) for t, e in sorted(stats.manifest.tasks.items())],
            numeric=(False, False, *[False] * len(collection_heading(stats)), *[True] * len(counters)),
            scroll=True,
        ),
    ]
    return "".join(parts)


def records(stats: CorpusStats) -> str:
    m = stats.manifest
    total = written(stats.totals)
    splits = sorted({s for e in m.tasks.values() for s in e.written_by_split})
    by_cluster_split: dict[str, dict[str, int]] = {}
    for entry in m.tasks.values():
        target = by_cluster_split.setdefault(entry.cluster, {})
        for split, n in entry.written_by_split.items():
            target[split] = target.get(split, 0) + n
    held = set(m.holdout_clusters)
    clusters = sorted(stats.by_cluster, key=lambda c: (-written(stats.by_cluster[c]), c))
    tasks = sorted(m.tasks, key=lambda t: (-written(m.tasks[t].counts), t))
    rates = task_rates(m)
    return "".join(
        [
            "<h3>Per cluster</h3>",
            bars([(c, written(stats.by_cluster[c])) for c in clusters], caption="records written per cluster"),
            table(
                ("cluster", "tasks", "written", "share", *splits, "held out"),
                [
                    (c, len(m.clusters[c]), written(stats.by_cluster[c]), share(written(stats.by_cluster[c]), total),
                     *(by_cluster_split[c].get(s, 0) for s in splits), "yes" if c in held else "")
                    for c in clusters
                ],
                numeric=(False, True, True, True, *[True] * len(splits), False),
            ),
            "<h3>Per task</h3>",
            bars([(t, written(m.tasks[t].counts)) for t in tasks], caption="records written per task"),
            table(
                ("task", "cluster", *collection_heading(stats), "written", "share", "rate", *splits,
                 "templates in spec", "templates in shards"),
                [
                    (t, m.tasks[t].cluster, *collection_cell(stats, m.tasks[t]), written(m.tasks[t].counts), share(written(m.tasks[t].counts), total),
                     rate_number(rates.get(t, 0.0)), *(m.tasks[t].written_by_split.get(s, 0) for s in splits), m.tasks[t].templates,
                     len(stats.templates.get(t, {})) if stats.parquet_rows else None)
                    for t in tasks
                ],
                numeric=(False, False, *[False] * len(collection_heading(stats)), True, True, True, *[True] * len(splits), True, True),
                scroll=True,
            ),
        ]
    )


def no_parquet(stats: CorpusStats) -> str:
    formats = ", ".join(stats.manifest.config.get("formats", ())) or "none"
    return p(f"This build has no Parquet shards (formats: {formats}); template counts, lengths and examples are read from Parquet.")


def template_label(task: str, template: str) -> str:
    return template if template.startswith(task) else f"{task}/{template}"


def templates_section(stats: CorpusStats) -> str:
    if not stats.parquet_rows:
        return no_parquet(stats)
    m = stats.manifest
    rows = []
    for task, per_template in stats.templates.items():
        in_task = sum(per_template.values())
        rows += [(task, m.tasks[task].cluster if task in m.tasks else "?", template, n, share(n, in_task)) for template, n in per_template.items()]
    parts = [
        p("Records per template, counted in the Parquet shards (every split)."),
        table(("task", "cluster", "template", "records", "share of task"), rows, numeric=(False, False, False, True, True), scroll=True),
    ]
    for cluster, names in m.clusters.items():
        items = [(template_label(t, tid), n) for t in names for tid, n in stats.templates.get(t, {}).items()]
        if items:
            parts.append(f"<details><summary>{escape(cluster)}: {len(items):,} templates</summary>"
                         + bars(items, caption=f"records per template in {cluster}") + "</details>")
    return "".join(parts)


def lengths_grid(lengths: TextLengths, where: str) -> str:
    figures = []
    for field, unit in MEASURES:
        caption = f"{field}, {'characters' if unit == 'chars' else 'words'}"
        chart = histogram_chart(lengths.histograms[field, unit], caption=f"{caption} ({where})", unit=unit)
        figures.append(f"<figure><figcaption>{escape(caption)}</figcaption>{chart}</figure>")
    return f'<div class="grid">{"".join(figures)}</div>'


def sample_rule(stats: CorpusStats) -> str:
    if stats.sampled_rows >= stats.parquet_rows:
        return f"Measured on every one of the {stats.parquet_rows:,} Parquet records."
    return (
        f"Measured on a sample of {stats.sampled_rows:,} of {stats.parquet_rows:,} Parquet records (--sample-rows "
        f"{stats.sample_limit:,}): each shard gives its first ceil(N × shard rows / corpus rows) rows, which are its "
        "lowest content hashes, since shards are sorted by content hash: a fixed sample spread evenly over tasks and templates."
    )


def lengths_section(stats: CorpusStats) -> str:
    if not stats.parquet_rows:
        return no_parquet(stats)
    headings, numeric = ["cluster", "rows measured"], [False, True]
    for field, unit in MEASURES:
        headings += [f"{field} {unit} mean", f"{field} {unit} max"]
        numeric += [True, True]
    rows = []
    for cluster, lengths in stats.lengths.items():
        row: list[Cell] = [cluster, lengths.rows]
        for measure in MEASURES:
            h = lengths.histograms[measure]
            row += [Number(h.mean, f"{h.mean:,.1f}"), h.longest]
        rows.append(row)
    parts = [p(sample_rule(stats) + " Characters are Unicode code points; words are runs of non-whitespace. "
               "Each bin is twice as wide as the one before (0, 1, 2–3, 4–7, …); hover over a bar for its count."),
             "<h3>All clusters</h3>", lengths_grid(stats.overall_lengths(), "all clusters"),
             "<h3>Per cluster</h3>", table(headings, rows, numeric=numeric, scroll=True)]
    for cluster, lengths in stats.lengths.items():
        parts.append(f"<details><summary>{escape(cluster)}: {lengths.rows:,} rows measured</summary>{lengths_grid(lengths, cluster)}</details>")
    return "".join(parts)


def weighs_collections(m: Manifest) -> bool:
    """Whether the build's recipe gave its collections weights (else one examples-proportional mixture)."""
    return any(isinstance(c, Mapping) and c.get("weight") is not None for c in m.collections.values())


def mixing_rule(m: Manifest) -> str:
    cap = m.config.get("mixing_rate_cap")
    weighted = weighs_collections(m)
    own_cap = "its collection's mixing_rate_cap, else " if weighted else ""
    weight = "" if cap is None else f"A task's mixing weight is min(its train examples, {own_cap}the build's cap {cap}). "
    if weighted:
        return weight + (
            "Its rate, the share of training it gets, is its collection's recipe weight (normalised over the collections that have "
            "train records) shared among the collection's tasks in proportion to their mixing weights (see Collections); "
            "flanforge train and the seqio Mixture mix by the same rule.")
    return weight + "Its rate, the share of training it gets, is its mixing weight over the sum of all tasks' weights (examples-proportional)."


def mixing_section(stats: CorpusStats) -> str:
    m = stats.manifest
    rates = task_rates(m)
    rule = p(mixing_rule(m))
    if not rates:
        return rule + p("No task has a mixing weight (no train records).")
    by_cluster: dict[str, float] = {}
    for t, r in rates.items():
        by_cluster[m.tasks[t].cluster] = by_cluster.get(m.tasks[t].cluster, 0.0) + r
    tasks = sorted(rates, key=lambda t: (-rates[t], t))
    clusters = sorted(by_cluster, key=lambda c: (-by_cluster[c], c))
    return "".join(
        [
            rule,
            "<h3>Per cluster</h3>",
            bars([(c, by_cluster[c]) for c in clusters], caption="rate per cluster", value_text=rate_text),
            "<h3>Per task</h3>",
            bars([(t, rates[t]) for t in tasks], caption="rate per task", value_text=rate_text),
            table(("task", "cluster", *collection_heading(stats), "mixing weight", "rate"),
                  [(t, m.tasks[t].cluster, *collection_cell(stats, m.tasks[t]), m.tasks[t].mixing_weight, rate_number(rates[t])) for t in tasks],
                  numeric=(False, False, *[False] * len(collection_heading(stats)), True, True), scroll=True),
        ]
    )


COLLECTION_FIGURES = ("weight", "rate", "tasks", "train", "written")  # the manifest's per-collection summary, in column order
SETTINGS_KEY = "settings"  # a collection's render settings in the summary, shown with own_settings


def number(value: Any) -> float:
    """A figure to sort or add up by; 0 for what is not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def own_settings(m: Manifest, name: str, summary: Mapping[str, Any]) -> str:
    """What a collection's tasks were built or weighed with that the build's settings do not say,
    as key=value: the recipe's mixing_rate_cap for it (None there: the build's), and the settings
    the manifest records per collection where they differ from the build's (None there is a value:
    no cap)."""
    recipe = m.config.get("collections")
    entry = recipe.get(name) if isinstance(recipe, Mapping) else None
    cap = entry.get("mixing_rate_cap") if isinstance(entry, Mapping) else None
    settings = summary.get(SETTINGS_KEY)
    own = dict(settings) if isinstance(settings, Mapping) else {}
    if cap is not None:
        own["mixing_rate_cap"] = cap
    return ", ".join(f"{k}={setting_text(v)}" for k, v in sorted(own.items()) if v != m.config.get(k))


def collections_section(stats: CorpusStats) -> str | None:
    """One row per collection: the recipe's weight, the rate that came of it, tasks and records.
    None (no section) for a manifest older than collections."""
    m = stats.manifest
    if not m.collections:
        return None
    summary = {name: c if isinstance(c, Mapping) else {} for name, c in m.collections.items()}
    names = sorted(summary, key=lambda c: (-number(summary[c].get("rate")), c))
    others = sorted({k for c in summary.values() for k in c} - {*COLLECTION_FIGURES, SETTINGS_KEY})
    settings = {name: own_settings(m, name, summary[name]) for name in names}
    shown_settings = ("own settings",) if any(settings.values()) else ()
    total = sum(number(c.get("written")) for c in summary.values())
    if weighs_collections(m):
        rule = ("A collection's rate, its share of training, is its recipe weight normalised over the collections that have train "
                "records; its tasks share it in proportion to their mixing weights (each task's rate: Mixing weights). A collection "
                "with no train records in this build gets rate 0, and its weight goes to the others in proportion. Compare the rate "
                "with the collection's share of the records written: a small collection with a large weight is seen many times over.")
    else:
        rule = ("This build's recipe weighs no collections (– under recipe weight): the whole build is one examples-proportional mixture, "
                "so a collection's rate is its tasks' rates summed.")
    if shown_settings:
        rule += " Own settings: what the recipe set for a collection that differs from the build's settings (Build)."
    return "".join(
        [
            p(rule),
            bars([(c, number(summary[c].get("rate"))) for c in names], caption="rate per collection", value_text=rate_text),
            table(
                ("collection", "recipe weight", "rate", "tasks", "train", "written", "share of written", *shown_settings, *others),
                [
                    (c, *(figure(summary[c].get(k)) for k in COLLECTION_FIGURES), share(number(summary[c].get("written")), total),
                     *((settings[c],) if shown_settings else ()), *(figure(summary[c].get(k)) for k in others))
                    for c in names
                ],
                numeric=(False, True, True, True, True, True, True, *[False] * len(shown_settings), *[True] * len(others)),
            ),
        ]
    )


FINDING_ORDER = ("checked", "exact", "ngram", "contaminated")


def contamination_findings(tasks: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, Mapping[str, Any]]]]:
    """(columns, tasks with a non-zero finding) of the manifest's contamination "tasks" object.
    Any number but `checked` counts as a finding; unknown fields are kept as columns."""
    columns: set[str] = set()
    flagged = []
    for task, found in sorted(tasks.items()):
        if not isinstance(found, Mapping):
            found = {"value": found}
        columns.update(found)
        if any(v for k, v in found.items() if k != "checked" and isinstance(v, (int, float))):
            flagged.append((task, found))
    ordered = [c for c in FINDING_ORDER if c in columns] + sorted(columns - set(FINDING_ORDER))
    return ordered, flagged


def as_cell(value: Any) -> Cell:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return Number(value, f"{value:,.4g}")
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def contamination_section(stats: CorpusStats) -> str:
    found = stats.contamination
    parts = ["<h3>Train examples found in evaluation data</h3>"]
    if not found:  # absent from older manifests
        parts.append(p("This build recorded no contamination check."))
    elif not isinstance(found, Mapping):
        parts.append(f"<pre>{escape(json_text(found))}</pre>")
    else:
        settings = {k: v for k, v in found.items() if k != "tasks"}
        if settings:
            parts.append(settings_table(settings))
        tasks = found.get("tasks") if isinstance(found.get("tasks"), Mapping) else {}
        columns, flagged = contamination_findings(tasks)
        if not tasks:
            parts.append(p("No task was checked (the build had no evaluation data to check against)."))
        elif flagged:
            parts.append(table(("task", *columns), [(t, *(as_cell(f.get(c)) if c in f else None for c in columns)) for t, f in flagged],
                               numeric=(False, *[True] * len(columns))))
        else:
            parts.append(p(f"No contamination found in the {len(tasks):,} tasks checked."))
    parts += ["<h3>Near-duplicate removal</h3>", near_dedup(stats)]
    return "".join(parts)


def near_dedup(stats: CorpusStats) -> str:
    """The build's near-dedup settings (a `near_dedup` object, or a `near_dedup` switch with
    `near_dedup_*` settings beside it) and the files of removed pairs it kept."""
    config = stats.manifest.config
    setting = config.get("near_dedup")
    if isinstance(setting, Mapping):
        parts = [settings_table(setting)]
    elif setting:
        parts = [settings_table({k: v for k, v in config.items() if k.startswith("near_dedup")})]
    else:
        parts = [p("This build did not remove near duplicates.")]
    files = [f for f in stats.near_duplicate_samples if isinstance(f, Mapping)]
    if files:
        columns = sorted({k for f in files for k in f} - {"sha256"}, key=lambda k: (k != "path", k))
        parts.append(p("Removed near-duplicate pairs kept for inspection:"))
        parts.append(table(columns, [[as_cell(f.get(c)) if c in f else None for c in columns] for f in files],
                           numeric=[all(isinstance(f.get(c), int) for f in files) for c in columns]))
    return "".join(parts)


def examples_section(stats: CorpusStats) -> str:
    if not stats.parquet_rows:
        return no_parquet(stats)
    parts = [p("Each task's first records in shard order (lowest content hashes), as written; text is shown escaped, verbatim.")]
    for task, entry in sorted(stats.manifest.tasks.items()):
        shown = stats.examples.get(task, [])
        if not shown:
            parts.append(p(f"{task}: no records written."))
            continue
        body = "".join(
            f'<div class="example"><div>template <code>{escape(e.template_id)}</code> · split {escape(e.split)}</div>'
            f"<div>inputs</div><pre>{escape(e.inputs)}</pre><div>targets</div><pre>{escape(e.targets)}</pre></div>"
            for e in shown
        )
        parts.append(f"<details><summary>{escape(task)} ({escape(entry.cluster)}): {len(shown)} example(s)</summary>{body}</details>")
    return "".join(parts)


def dead_letters_section(stats: CorpusStats) -> str:
    letters = stats.manifest.dead_letters
    if not letters:
        return p("No dead letters: every source record was read and every template application rendered or was counted.")
    return p("Rows and template applications that failed, with the reason, one JSON object a line.") + table(
        ("task", "rows", "path"), [(d.task, d.rows, d.path) for d in sorted(letters, key=lambda d: (-d.rows, d.task))], numeric=(False, True, False)
    )


SECTIONS = (
    ("accounting", "Accounting", accounting),
    ("records", "Records", records),
    ("templates", "Templates", templates_section),
    ("lengths", "Text lengths", lengths_section),
    ("collections", "Collections", collections_section),
    ("mixing", "Mixing weights", mixing_section),
    ("contamination", "Contamination and near duplicates", contamination_section),
    ("examples", "Examples", examples_section),
    ("dead-letters", "Dead letters", dead_letters_section),
)


def render_page(stats: CorpusStats) -> str:
    root = stats.manifest.root
    shown = [(anchor, title, body) for anchor, title, render in SECTIONS if (body := render(stats)) is not None]
    nav = "".join(f'<a href="#{anchor}">{escape(title)}</a>' for anchor, title, _ in shown)
    sections = "".join(f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>' for anchor, title, body in shown)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(SORT_SCRIPT)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>flanforge corpus: {escape(root)}</title><style>{STYLE}</style></head><body>"
        f"<h1>flanforge corpus report</h1>{p(root)}<nav>{nav}</nav>{problems_box(stats)}"
        f'<section id="build"><h2>Build</h2>{overview(stats)}</section>{sections}'
        f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )
