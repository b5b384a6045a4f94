// flanforge studio: the page. Plain DOM, no framework and nothing from the network.
// Template text is untrusted data: it only ever reaches the page through textContent and
// form values, never as HTML.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const RENDER_DELAY_MS = 300;

const state = {
  catalog: null,
  collection: "",     // the task list shows only this collection's tasks ("" every task)
  task: null,         // the task's detail as the server sent it
  templates: [],      // the draft: {id, inputs, targets, inverted, show_options, free_text, filter, origin}
  baseSha: null,      // sha256 of the file text the draft edits
  dirty: false,
  rows: "samples",
  offset: 0,
  limit: 10,
  evaluation: null,
  renderSeq: 0,
  renderTimer: null,
  corpus: null,
  corpusDir: null,
  records: { task: null, split: "", template: "", offset: 0, limit: 20 },
};

// --- helpers --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(data.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

function show(view) {
  for (const id of ["task-view", "welcome", "corpus-view"]) $("#" + id).hidden = id !== view;
  $("#nav-corpus").classList.toggle("active", view === "corpus-view");
  $("#nav-templates").classList.toggle("active", view !== "corpus-view");
}

function offsetOf(text, line, column) {
  const lines = text.split("\n");
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
  return offset + Math.max(0, (column || 1) - 1);
}

// --- the catalog ------------------------------------------------------------------------------

async function loadCatalog() {
  state.catalog = await api("/api/catalog");
  $("#root").textContent = state.catalog.root + (state.catalog.overlay ? "  (overlay on the bundled catalog)" : "");
  const problems = $("#catalog-problems");
  problems.hidden = state.catalog.problems.length === 0;
  problems.textContent = "The catalog does not load:\n" + state.catalog.problems.join("\n");
  drawCollectionFilter();
  drawTree();
}

// The collection select: every collection of the catalog with its number of tasks, shown when
// there is more than one to choose from.
function drawCollectionFilter() {
  const counts = new Map();
  for (const cluster of state.catalog.clusters) {
    for (const t of cluster.tasks) counts.set(t.collection, (counts.get(t.collection) || 0) + 1);
  }
  if (!counts.has(state.collection)) state.collection = "";
  const names = [...counts.keys()].sort();
  $("#collection-filter").replaceChildren(el("option", { value: "", text: "all collections", selected: state.collection === "" }),
    ...names.map((name) => el("option", { value: name, text: `${name} (${counts.get(name)})`, selected: name === state.collection })));
  $("#collection-filter-label").hidden = names.length < 2;
}

function drawTree() {
  const query = $("#search").value.trim().toLowerCase();
  const tree = $("#tree");
  tree.replaceChildren();
  for (const cluster of state.catalog.clusters) {
    const tasks = cluster.tasks.filter((t) => (!state.collection || t.collection === state.collection)
      && (!query || t.name.includes(query) || t.description.toLowerCase().includes(query)));
    if (!tasks.length) continue;
    const open = Boolean(query || state.collection) || (state.task && state.task.cluster === cluster.name);
    tree.append(el("details", { open, "data-cluster": cluster.name },
      el("summary", { title: cluster.description }, cluster.name, " ", el("span", { class: "muted", text: `(${tasks.length})` })),
      tasks.map((t) => el("a", {
        href: `#/task/${t.name}`, "data-task": t.name, class: state.task && state.task.name === t.name ? "current" : "",
        title: `${t.description} (collection ${t.collection})`,
      }, t.name, " ", el("span", { class: "muted", text: `${t.counts.templates} tpl` })))));
  }
}

// --- one task -------------------------------------------------------------------------------

async function openTask(name) {
  if (state.task && state.task.name !== name && state.dirty && !confirm(`Discard your unsaved edits to ${state.task.name}?`)) {
    location.hash = `#/task/${state.task.name}`;
    return;
  }
  let detail;
  try {
    detail = await api(`/api/tasks/${encodeURIComponent(name)}`);
  } catch (e) {
    show("welcome");
    toast(e.message);
    return;
  }
  state.task = detail;
  state.templates = detail.templates.map((t) => ({ ...t }));
  state.baseSha = detail.base_sha256;
  state.dirty = false;
  if (!detail.row_sources.some((s) => s.key === state.rows)) state.rows = "samples";
  state.offset = 0;
  drawTaskHead();
  drawTemplates();
  drawTree();
  show("task-view");
  renderNow();
}

function drawTaskHead() {
  const t = state.task;
  $("#task-name").textContent = t.name;
  $("#task-cluster").textContent = t.cluster;
  $("#task-collection").textContent = t.collection;
  $("#task-description").textContent = t.description;
  const source = [t.source.kind, t.source.path, t.source.name].filter(Boolean).join(" ");
  const options = t.options === null ? "none (generative)" : Array.isArray(t.options) ? `${t.options.length}: ${t.options.join(" · ")}` : t.options;
  const facts = [
    ["collection", `${t.collection} (${t.collection_in_spec ? "the spec's collection" : "by origin: the spec names none"})`],
    ["source", `${source} — splits ${Object.keys(t.source.splits).join(", ")}`],
    ["templates", `${t.counts.templates} (${t.counts.inverted} inverted, ${t.counts.options} showing options)`],
    ["options", options],
    ["variables", t.variables.join(", ")],
    ...(t.filters.length ? [["row filters", t.filters.join(" · ")]] : []),
    ["metric", t.metric],
    ["license", t.license],
    ["file", t.save_path || t.path],
  ];
  $("#task-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const note = $("#task-note");
  note.hidden = t.own && !t.read_only;
  note.textContent = t.read_only ? `Read only: ${t.read_only}`
    : t.own ? "" : `This task is bundled (${t.path}); saving writes your copy to ${t.save_path}, which then overrides it.`;
  $("#review-save").disabled = Boolean(t.read_only);
  const select = $("#rows-source");
  select.replaceChildren(...t.row_sources.map((s) => el("option", { value: s.key, text: s.label, selected: s.key === state.rows })));
  $("#samples-json").textContent = JSON.stringify(t.samples, null, 2);
}

function drawTemplates() {
  const box = $("#templates");
  box.replaceChildren(...state.templates.map((t, i) => templateCard(t, i)));
  if (state.evaluation) applyEvaluation(state.evaluation);
}

const FLAG_HINTS = {
  inverted: "turns the task around: its target is not an option",
  show_options: "append the OPTIONS block to the input",
  free_text: "the target is free text about the example, not an option",
  cot: "chain of thought: the target is a rationale, then the spec's answer phrase",
};

// The text fields a template is written in: inputs and targets, or promptsource's form.
function textFields(t) {
  return "jinja" in t ? ["jinja", ...("answer_choices" in t ? ["answer_choices"] : [])] : ["inputs", "targets"];
}

function templateCard(t, i) {
  const changed = (key) => (event) => {
    const target = event.target;
    state.templates[i][key] = target.type === "checkbox" ? target.checked : key === "filter" ? (target.value || null) : target.value;
    markDirty();
    scheduleRender();
  };
  const flags = Object.entries(state.task.template_flags).map(([key, fallback]) =>
    el("label", { title: FLAG_HINTS[key] || key },
      el("input", { type: "checkbox", class: key, checked: key in t ? Boolean(t[key]) : fallback, onchange: changed(key) }), " ", key.replace("_", " ")));
  const texts = textFields(t).flatMap((key) => [
    el("label", { class: "field" }, key),
    el("textarea", { class: key, rows: Math.min(12, String(t[key]).split("\n").length + 1), spellcheck: "false", oninput: changed(key) }, t[key]),
    el("div", { class: `field-findings ${key}-findings` }),
  ]);
  const n = state.templates.length;
  return el("article", { class: "template", "data-index": i, "data-id": t.id },
    el("div", { class: "editor" },
      el("div", { class: "template-head" },
        el("input", { class: "tid", value: t.id, "aria-label": "template id", oninput: changed("id") }),
        flags,
        el("span", { class: "actions" },
          el("button", { type: "button", class: "up", title: "Move up", disabled: i === 0, onclick: () => move(i, -1) }, "↑"),
          el("button", { type: "button", class: "down", title: "Move down", disabled: i === n - 1, onclick: () => move(i, 1) }, "↓"),
          el("button", { type: "button", class: "duplicate", title: "Duplicate", onclick: () => duplicate(i) }, "copy"),
          el("button", { type: "button", class: "delete", title: "Delete", disabled: n === 1, onclick: () => remove(i) }, "delete"))),
      texts,
      el("label", { class: "field" }, "filter (optional: the template applies only where this expression is true)"),
      el("input", { class: "filter", value: t.filter || "", spellcheck: "false", oninput: changed("filter") }),
      el("div", { class: "field-findings filter-findings" }),
      el("ul", { class: "template-findings" }),
      el("div", { class: "stats" })),
    el("div", { class: "renders-box" },
      el("table", { class: "renders" },
        el("colgroup", {}, el("col", { class: "n" }), el("col", { class: "inputs" }), el("col", { class: "targets" }), el("col", { class: "options" })),
        el("thead", {}, el("tr", {}, el("th", { class: "n", text: "row" }), el("th", { text: "inputs" }), el("th", { text: "targets" }), el("th", { text: "options" }))),
        el("tbody"))));
}

function markDirty() {
  state.dirty = true;
}

function move(i, step) {
  const j = i + step;
  [state.templates[i], state.templates[j]] = [state.templates[j], state.templates[i]];
  structureChanged();
}

function duplicate(i) {
  const ids = new Set(state.templates.map((t) => t.id));
  const stem = state.templates[i].id.replace(/_?\d+$/, "");
  let k = state.templates.length + 1;
  while (ids.has(`${stem}_${String(k).padStart(2, "0")}`)) k++;
  state.templates.splice(i + 1, 0, { ...state.templates[i], id: `${stem}_${String(k).padStart(2, "0")}`, origin: null });
  structureChanged();
}

function remove(i) {
  state.templates.splice(i, 1);
  structureChanged();
}

function addTemplate() {
  const ids = new Set(state.templates.map((t) => t.id));
  let k = state.templates.length + 1;
  while (ids.has(`${state.task.name}_${String(k).padStart(2, "0")}`)) k++;
  const answer = state.task.options === null ? "" : "{{ answer }}";
  state.templates.push({ id: `${state.task.name}_${String(k).padStart(2, "0")}`, inputs: "", targets: answer, origin: null });
  structureChanged();
  const cards = document.querySelectorAll("#templates .template");
  const last = cards[cards.length - 1];
  last.scrollIntoView({ block: "center" });
  $("textarea.inputs", last).focus();
}

function structureChanged() {
  state.evaluation = null;
  markDirty();
  drawTemplates();
  scheduleRender();
}

// --- rendering ------------------------------------------------------------------------------

function scheduleRender() {
  clearTimeout(state.renderTimer);
  $("#save-status").textContent = "rendering…";
  $("#save-status").className = "";
  state.renderTimer = setTimeout(renderNow, RENDER_DELAY_MS);
}

async function renderNow() {
  clearTimeout(state.renderTimer);
  const seq = ++state.renderSeq;
  const fewShot = $("#few-shot").checked ? Number($("#few-shot-k").value) || 1 : 0;
  let result;
  try {
    result = await api(`/api/tasks/${encodeURIComponent(state.task.name)}/render`, {
      templates: state.templates, rows: state.rows, offset: state.offset, limit: state.limit,
      few_shot: fewShot, no_options: $("#no-options").checked,
    });
  } catch (e) {
    if (seq !== state.renderSeq) return;
    $("#save-status").textContent = e.message;
    $("#save-status").className = "bad";
    return;
  }
  if (seq !== state.renderSeq) return; // a newer render is on its way
  state.evaluation = result;
  applyEvaluation(result);
}

function findingText(f) {
  const where = [f.row ? `row ${f.row}` : null, f.line ? `line ${f.line}${f.column ? `, column ${f.column}` : ""}` : null].filter(Boolean).join(", ");
  return where ? `${where}: ${f.message}` : f.message;
}

function applyEvaluation(result) {
  const cards = document.querySelectorAll("#templates .template");
  const byTemplate = new Map();
  for (const f of result.findings) {
    const key = f.template === null ? "task" : f.template;
    if (!byTemplate.has(key)) byTemplate.set(key, []);
    byTemplate.get(key).push(f);
  }
  cards.forEach((card, i) => {
    const findings = byTemplate.get(i) || [];
    card.classList.toggle("has-errors", findings.some((f) => f.severity === "error"));
    for (const field of [...textFields(state.templates[i]), "filter"]) {
      const here = findings.filter((f) => f.field === field && f.line);
      const box = $(`.${field}-findings`, card);
      const input = $(field === "filter" ? "input.filter" : `textarea.${field}`, card);
      input.classList.toggle("bad", here.length > 0);
      box.replaceChildren(...here.map((f) => el("div", {
        class: "syntax-error", title: "Go to the error",
        onclick: () => { const at = offsetOf(input.value, f.line, f.column); input.focus(); input.setSelectionRange(at, at + 1); },
      }, `line ${f.line}${f.column ? `, column ${f.column}` : ""}: ${f.message}`)));
    }
    const others = findings.filter((f) => !(f.line && f.field));
    $(".template-findings", card).replaceChildren(...others.slice(0, 12).map((f) => el("li", { class: f.severity, text: findingText(f) })));
    drawStats(card, result.templates[i], result.limits);
    drawRenders(card, result, i);
  });
  const general = byTemplate.get("task") || [];
  const errors = result.findings.filter((f) => f.severity === "error").length;
  const warnings = result.findings.length - errors;
  $("#findings").replaceChildren(
    general.length ? el("ul", {}, general.map((f) => el("li", { class: f.severity, text: findingText(f) }))) : "",
    result.findings.length ? el("p", { class: "muted", text: `${errors} error(s), ${warnings} warning(s) on these rows` }) : "");
  const read = $("#read-problems");
  read.hidden = result.page.read_problems.length === 0;
  read.textContent = "Records the reader could not read (a build makes them dead letters):\n" + result.page.read_problems.join("\n");
  $("#page-label").textContent = `rows ${result.page.offset + 1}–${result.page.offset + result.rows.length}`;
  $("#prev-page").disabled = result.page.offset === 0;
  $("#next-page").disabled = !result.page.has_more;
  const status = $("#save-status");
  if (result.save_problems.length) {
    status.textContent = `✗ ${result.save_problems.length} problem(s) on the spec's samples: save refused`;
    status.title = result.save_problems.join("\n");
    status.className = "bad";
  } else {
    status.textContent = state.dirty ? "✓ validates: ready to save" : "✓ validates (no changes)";
    status.title = "";
    status.className = "ok";
  }
}

function drawStats(card, summary, limits) {
  const box = $(".stats", card);
  if (!summary || !summary.rendered) {
    box.textContent = "not rendered: fix the findings above";
    return;
  }
  const parts = [];
  if (summary.inputs_chars.length) parts.push(`inputs ≤ ${summary.inputs_chars[0]} chars (mean ${summary.inputs_chars[1]})`);
  if (summary.targets_chars.length) parts.push(`targets ≤ ${summary.targets_chars[0]} chars (mean ${summary.targets_chars[1]})`);
  parts.push(`slowest render ${summary.slowest_ms} ms (budget ${limits.render_budget_s * 1000} ms, output limit ${limits.max_output_chars.toLocaleString()} chars)`);
  box.textContent = parts.join(" · ");
}

function drawRenders(card, result, i) {
  const body = $("tbody", card);
  body.replaceChildren(...result.rows.map((row, r) => {
    const n = el("td", { class: "n", text: String(row.number), title: row.example_id });
    if (row.status !== "ok") {
      return el("tr", {}, n, el("td", { colspan: 3, class: row.status === "filtered" ? "filtered" : "error",
        text: row.status === "filtered" ? "dropped by the spec's filters" : row.error }));
    }
    const cell = result.cells[r][i];
    if (!cell) return el("tr", {}, n, el("td", { colspan: 3, class: "skipped", text: "—" }));
    if (cell.error) return el("tr", {}, n, el("td", { colspan: 3, class: "error", text: cell.error }));
    if (cell.skipped) return el("tr", {}, n, el("td", { colspan: 3, class: "skipped", text: "skipped: the template's filter excludes this row" }));
    const options = cell.options.length
      ? cell.options.map((o, k) => el("div", { class: k === cell.answer_index ? "answer" : "" }, (k === cell.answer_index ? "✓ " : "· ") + o))
      : [el("span", { class: "muted", text: "—" })];
    return el("tr", {}, n,
      el("td", { class: "inputs" }, cell.inputs, el("span", { class: "len", text: `${cell.inputs.length} chars · ${cell.template_type}` })),
      el("td", { class: "targets" }, cell.targets, el("span", { class: "len", text: `${cell.targets.length} chars` })),
      el("td", { class: "options" }, ...options));
  }));
}

// --- saving ---------------------------------------------------------------------------------

async function reviewSave() {
  let check;
  try {
    check = await api(`/api/tasks/${encodeURIComponent(state.task.name)}/check`, { templates: state.templates, base_sha256: state.baseSha });
  } catch (e) {
    toast(e.message);
    return;
  }
  $("#diff-path").textContent = check.path;
  const problems = $("#diff-problems");
  problems.hidden = check.problems.length === 0;
  problems.textContent = "Not saved until these are fixed:\n" + check.problems.join("\n");
  const diff = $("#diff");
  diff.replaceChildren(...(check.diff || "(no changes)\n").split(/(?<=\n)/).map((line) =>
    el("span", { class: line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, line)));
  $("#confirm-save").disabled = check.problems.length > 0 || !check.diff;
  $("#diff-dialog").showModal();
}

async function confirmSave() {
  let saved;
  try {
    saved = await api(`/api/tasks/${encodeURIComponent(state.task.name)}/save`, { templates: state.templates, base_sha256: state.baseSha });
  } catch (e) {
    $("#diff-problems").hidden = false;
    $("#diff-problems").textContent = e.message;
    return;
  }
  $("#diff-dialog").close();
  state.dirty = false;
  toast(`Saved ${saved.path}`);
  await loadCatalog();
  await openTask(state.task.name);
}

// --- a built corpus -------------------------------------------------------------------------

async function openCorpus(dir) {
  const error = $("#corpus-error");
  error.hidden = true;
  $("#corpus-records").hidden = true;
  try {
    state.corpus = await api(`/api/corpus?dir=${encodeURIComponent(dir)}`);
  } catch (e) {
    error.hidden = false;
    error.textContent = e.message;
    $("#corpus-summary").replaceChildren();
    return;
  }
  const c = state.corpus;
  const columns = ["read", "filtered", "template_applications", "written", "duplicates", "capped", "failed", "skipped"];
  $("#corpus-summary").replaceChildren(
    el("p", { class: "muted", text: `${c.root} · flanforge ${c.flanforge_version} · splits ${c.splits.join(", ")} · ${JSON.stringify(c.config)}` }),
    el("table", {},
      el("thead", {}, el("tr", {}, el("th", { text: "task" }), el("th", { text: "templates" }), columns.map((k) => el("th", { text: k.replace("_", " ") })),
        el("th", { text: "rate" }))),
      el("tbody", {}, c.tasks.map((t) => el("tr", { class: "task", "data-task": t.name, onclick: () => openRecords(t.name) },
        el("td", {}, t.name, " ", el("span", { class: "badge", text: t.cluster }),
          t.collection ? el("span", { class: "badge collection", text: t.collection }) : null),
        el("td", { text: t.templates }),
        columns.map((k) => el("td", { text: t.counts[k] ?? 0 })),
        el("td", { class: "rate", text: t.rate ? t.rate.toPrecision(4) : "–" }))))));
}

async function openRecords(task, keep = false) {
  const r = state.records;
  if (!keep) Object.assign(r, { task, split: state.corpus.splits.includes("train") ? "train" : state.corpus.splits[0] || "", template: "", offset: 0 });
  const params = new URLSearchParams({ dir: state.corpus.root, task, split: r.split, template: r.template, offset: r.offset, limit: r.limit });
  let page;
  try {
    page = await api(`/api/corpus/records?${params}`);
  } catch (e) {
    toast(e.message);
    return;
  }
  $("#corpus-records").hidden = false;
  $("#records-title").textContent = `${task}: ${page.total} record(s)` + (r.template ? ` of ${r.template}` : "");
  $("#records-split").replaceChildren(...state.corpus.splits.map((s) => el("option", { value: s, text: s, selected: s === r.split })));
  const templates = Object.entries(page.per_template);
  $("#records-template").replaceChildren(el("option", { value: "", text: "all templates" }),
    ...templates.map(([id, count]) => el("option", { value: id, text: `${id} (${count})`, selected: id === r.template })));
  $("#records-label").textContent = page.total ? `${page.offset + 1}–${page.offset + page.records.length} of ${page.total}` : "none";
  $("#records-prev").disabled = page.offset === 0;
  $("#records-next").disabled = page.offset + page.records.length >= page.total;
  $("#records-table tbody").replaceChildren(...page.records.map((rec) => el("tr", {},
    el("td", {}, rec.template_id, el("span", { class: "type", text: rec.template_type }), el("span", { class: "type", text: rec.example_id })),
    el("td", { text: rec.inputs }), el("td", { text: rec.targets }),
    el("td", {}, ...(rec.options.length ? rec.options.map((o, k) => el("div", { class: k === rec.answer_index ? "answer" : "" }, (k === rec.answer_index ? "✓ " : "· ") + o)) : ["—"])))));
}

// --- wiring -----------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/";
  if (hash.startsWith("#/task/")) {
    await openTask(decodeURIComponent(hash.slice("#/task/".length)));
  } else if (hash.startsWith("#/corpus")) {
    show("corpus-view");
    const dir = new URLSearchParams(hash.split("?")[1] || "").get("dir");
    if (dir && dir !== state.corpusDir) {
      state.corpusDir = dir;
      $("#corpus-dir").value = dir;
      await openCorpus(dir);
    }
  } else {
    show(state.task ? "task-view" : "welcome");
  }
}

function wire() {
  $("#search").addEventListener("input", drawTree);
  $("#collection-filter").addEventListener("change", (e) => { state.collection = e.target.value; drawTree(); });
  $("#rows-source").addEventListener("change", (e) => { state.rows = e.target.value; state.offset = 0; renderNow(); });
  $("#prev-page").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); renderNow(); });
  $("#next-page").addEventListener("click", () => { state.offset += state.limit; renderNow(); });
  for (const id of ["#few-shot", "#few-shot-k", "#no-options"]) $(id).addEventListener("change", renderNow);
  $("#add-template").addEventListener("click", addTemplate);
  $("#review-save").addEventListener("click", reviewSave);
  $("#confirm-save").addEventListener("click", confirmSave);
  $("#cancel-save").addEventListener("click", () => $("#diff-dialog").close());
  $("#corpus-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/corpus?dir=${encodeURIComponent($("#corpus-dir").value.trim())}`;
  });
  $("#records-split").addEventListener("change", (e) => { Object.assign(state.records, { split: e.target.value, offset: 0 }); openRecords(state.records.task, true); });
  $("#records-template").addEventListener("change", (e) => { Object.assign(state.records, { template: e.target.value, offset: 0 }); openRecords(state.records.task, true); });
  $("#records-prev").addEventListener("click", () => { state.records.offset = Math.max(0, state.records.offset - state.records.limit); openRecords(state.records.task, true); });
  $("#records-next").addEventListener("click", () => { state.records.offset += state.records.limit; openRecords(state.records.task, true); });
  window.addEventListener("hashchange", route);
  window.addEventListener("beforeunload", (e) => { if (state.dirty) e.preventDefault(); });
}

wire();
loadCatalog().then(route).catch((e) => toast(e.message));
