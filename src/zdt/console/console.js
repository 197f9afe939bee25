// The zdt console's page: plain DOM, no framework, no build step. Every value shown comes
// from the API and is set as text (never as HTML). Live views follow the journal through
// Server-Sent Events; nothing polls.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const view = document.getElementById("view");
let stream = null;                       // the EventSource of the workflow shown, if any

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "onclick" || key === "oninput" || key === "onchange") node[key] = value;
    else if (key === "style") node.style.cssText = value;   // CSSOM: allowed by the CSP
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}};
  const reply = await fetch(path, options);
  const data = await reply.json().catch(() => ({message: reply.statusText}));
  if (!reply.ok) throw Object.assign(new Error(data.message || reply.statusText), data);
  return data;
}

function table(headers, rows) {
  return el("div", {class: "scroll"}, el("table", {},
    el("thead", {}, el("tr", {}, headers.map(h => el("th", {}, h)))),
    el("tbody", {}, rows.map(r => el("tr", {}, r.map(c => el("td", {}, c)))))));
}

function stateOf(text) { return el("span", {class: "state", "data-state": text}, text); }
function seconds(x) { return x === null || x === undefined ? "" : `${x.toFixed(2)} s`; }
function fail(error) { return el("p", {class: "error", role: "alert"}, error.message); }

// -- the domain -------------------------------------------------------------------------

async function domainView(mine) {
  const d = await api("/api/domain");
  if (mine !== shown) return;            // the operator went elsewhere meanwhile
  const running = d.workflow ? el("p", {}, "Workflow in progress: ",
    el("a", {href: `#/workflows/${d.workflow.id}`}, d.workflow.id), " ",
    stateOf(d.workflow.state)) : el("p", {}, "No workflow holds the domain.");
  const nodes = d.nodes.map(n => [n.name, n.address, n.home ? n.home.version || "?" : "",
    n.home ? n.home.kind + (n.home.target ? ` → ${n.home.target}` : "") : n.error]);
  const servers = d.servers.map(s => [s.name, s.node, s.port,
    s.process.error || stateOf(s.process.state), s.process.pid || "",
    !s.balancer ? "(not behind the LB)" : s.balancer.error ||
      `${s.balancer.admin} / ${s.balancer.status}`,
    s.balancer && !s.balancer.error ? s.balancer.sessions : "",
    s.stale === null ? "not known" : s.stale.length ?
      el("span", {class: "error"}, s.stale.map(p => `${p.pid}: ${p.files.join(", ")}`)
        .join("; ")) : "none"]);
  view.replaceChildren(el("h1", {}, `Domain ${d.name}`),
    el("p", {class: "why"}, `${d.source} · LB ${d.lb} · services ${d.services}`,
       d.read_only ? " · read-only console" : ""),
    running,
    el("h2", {}, "Nodes"), table(["node", "address", "version", "home"], nodes),
    el("h2", {}, "Servers"),
    table(["server", "node", "port", "process", "pid", "LB admin / status", "sessions",
           "stale files"], servers),
    el("h2", {}, "Clusters"),
    table(["cluster", "servers"], d.clusters.map(c => [c.name, c.servers.join(", ")])));
}

// -- starting a workflow ----------------------------------------------------------------

async function newView(mine) {
  const meta = await api("/api/kinds");
  if (mine !== shown) return;
  if (meta.read_only) {
    view.replaceChildren(el("h1", {}, "Start a workflow"),
      el("p", {}, "This console is read-only: it starts nothing."));
    return;
  }
  const form = el("form", {class: "grid", id: "start-form"});
  const kind = el("select", {name: "kind", id: "kind"},
    meta.kinds.map(k => el("option", {value: k.name}, k.name)));
  const own = el("div", {id: "kind-fields", style: "display: contents"});
  const result = el("div", {id: "preview"});
  const start = el("button", {type: "button", id: "start", disabled: true}, "Start");
  const preview = el("button", {type: "button", id: "preview-button"}, "Preview");
  let previewed = null;                  // the request the preview shown was made for

  function field(name, type, value, help, required) {
    const id = `f-${name}`;
    const input = type === "bool" && value === null     // on, off, or as configured
      ? el("select", {id, name}, el("option", {value: ""}, "as the domain says"),
           el("option", {value: "true"}, "on"), el("option", {value: "false"}, "off"))
      : type === "bool"
      ? el("input", {type: "checkbox", id, name, checked: value === true})
      : el("input", {type: type === "int" || type === "float" ? "number" : "text", id, name,
                     step: type === "float" ? "any" : null,
                     value: value === null || value === undefined ? "" : value});
    input.dataset.type = type;
    return [el("label", {for: id}, name.replaceAll("_", " "), required ? " *" : ""), input,
            help ? el("div", {class: "help"}, help) : null];
  }
  function showFields() {
    const k = meta.kinds.find(x => x.name === kind.value);
    own.replaceChildren(...k.fields.map(f => field(f.name, f.type === "bool" ? "bool" : "str",
                                                   f.default, f.help, f.required)).flat());
  }
  function request() {
    const body = {kind: kind.value};
    for (const input of form.querySelectorAll("input, select[data-type]")) {
      const type = input.dataset.type;
      if (input.validity.badInput) throw new Error(`${input.name}: not a number`);
      if (input.tagName === "SELECT") { if (input.value) body[input.name] = input.value === "true"; }
      else if (type === "bool") body[input.name] = input.checked;
      else if (input.value === "") continue;
      else if (type === "int" || type === "float") {
        const n = Number(input.value);     // the server says what is wrong with it
        body[input.name] = Number.isFinite(n) ? n : input.value;
      } else body[input.name] = input.value;
    }
    if (body.partitions !== undefined) body.partitions = body.partitions.split(",");
    return body;
  }
  function changed() { start.disabled = true; previewed = null; }
  kind.onchange = () => { showFields(); changed(); result.replaceChildren(); };
  form.oninput = changed;
  let digest = null;                     // what the server prepared for that preview
  preview.onclick = async () => {
    result.replaceChildren(el("p", {}, "Checking…"));
    try {
      const body = request();
      const r = await api("/api/preview", body);
      result.replaceChildren(previewReport(r));
      previewed = r.ok ? JSON.stringify(body) : null;
      digest = r.digest;
      start.disabled = !r.ok;
    } catch (e) { result.replaceChildren(fail(e)); }
  };
  start.onclick = async () => {
    const body = request();
    if (JSON.stringify(body) !== previewed) { changed(); return; }
    start.disabled = true;
    try {                                  // refused if anything changed since the preview
      const r = await api("/api/workflows", {...body, preview_digest: digest});
      location.hash = `#/workflows/${r.id}`;
    } catch (e) { result.append(fail(e)); }
  };
  form.append(el("label", {for: "kind"}, "kind"), kind, own,
    ...meta.options.map(o => field(o.name, o.type, o.default, o.help, false)).flat());
  showFields();
  view.replaceChildren(el("h1", {}, "Start a workflow"), form,
    el("div", {class: "buttons"}, preview, start),
    el("p", {class: "why"}, "Nothing starts without a preview; changing an input asks for a " +
       "new one."), result);
}

function previewReport(r) {
  const checks = r.preconditions.map(c => [c.node || "", c.server || "", c.name,
    stateOf(!c.ok ? "no" : c.warn ? "warn" : "ok"), c.detail]);
  const plan = r.plan.map(v => [String(v.batch), v.node, v.servers.join(", "),
                                v.steps.join(" → ")]);
  const c = r.capacity;
  const e = r.estimates;
  return el("section", {id: "preview-report"},
    el("h2", {}, `Preview of a ${r.kind} rollout of ${r.targets.join(", ")}: nothing was ` +
       "changed"),
    r.archive ? el("p", {}, `archive ${r.archive.path}: version ${r.archive.version}`) : null,
    ...(r.notes || []).map(n => el("p", {class: "note"}, n.message)),   // a --stale scan
    table(["node", "server", "check", "", "detail"], checks),
    el("h2", {}, "Plan"), table(["batch", "node", "servers", "steps"], plan),
    el("p", {id: "batches"}, `${c.batches} batch(es) (--batch ${c.batch}, at most ` +
       `${c.largest_batch} node visit(s) side by side)`),
    el("ul", {id: "capacity"}, ...c.clusters.map(b => el("li", {}, b.line))),
    r.analysis ? el("p", {id: "analysis-gate"}, `analysis: ${r.analysis.line}`) : null,
    el("p", {id: "estimate"}, `estimate: ${e.total_seconds.toFixed(1)} s in all (${e.basis})`),
    r.ok ? null : el("p", {class: "error"}, "preconditions not met: a start would be refused"));
}

// -- a workflow -------------------------------------------------------------------------

let shown = 0;                           // which route is on screen (a late answer of a
                                         // route left meanwhile must not act)
async function workflowView(id, mine) {
  const first = await api(`/api/workflows/${encodeURIComponent(id)}`);
  if (mine !== shown) return;
  const header = el("div", {id: "workflow-header"});
  const buttons = el("div", {class: "buttons", id: "actions"});
  const steps = el("div", {id: "steps"});
  const visits = el("div", {id: "visits"});
  const witness = el("p", {id: "witness"});
  const analysis = el("ul", {id: "analysis"});
  const errors = el("div", {id: "errors"});
  view.replaceChildren(el("h1", {}, `Workflow ${id}`), header, buttons, steps, errors,
                       visits, analysis, witness);
  let pending = null;
  async function refresh(given) {
    const w = given || await api(`/api/workflows/${encodeURIComponent(id)}`);
    if (mine !== shown) return;
    header.replaceChildren(el("p", {}, `${w.kind} of ${(w.targets || []).join(", ")}: `,
      el("span", {id: "workflow-state", class: "state", "data-state": w.state}, w.state),
      ` · ${seconds(w.duration ?? elapsed(w.started))}`, remaining(w),
      w.interrupted ? " · interrupted: no zdt process runs it" : ""),
      w.error ? el("p", {class: "error"}, w.error) : "");
    buttons.replaceChildren(...["stop", "resume", "revert"].map(a => action(id, a, w.actions)));
    steps.replaceChildren(stepRows(w.steps));
    const failed = w.steps.filter(s => s.error);
    errors.replaceChildren(...(failed.length ? [el("h2", {}, "Errors"),
      table(["node", "step", "tries", "error"], failed.map(s => [s.node, s.name, s.attempts,
        el("span", {class: "error"}, s.error)]))] : []));
    visits.replaceChildren(visitRows(w.nodes, w.steps));
    witness.textContent = w.witness ? witnessLine(w.witness) : "";
    analysis.replaceChildren(...(w.notes || []).map(n => el("li", {class: "note"}, n.message)),
      ...(w.analysis || []).map(a => el("li",                      // each gate's verdict
        {class: "verdict", "data-verdict": a.verdict}, a.sentence)));
  }
  function soon() {                      // one refresh for a burst of events
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh().catch(showError); }, 150);
  }
  function showError(e) { header.append(fail(e)); }
  await refresh(first);
  // follow: a resume or revert started later, from here or the CLI, streams on
  stream = new EventSource(`/api/workflows/${encodeURIComponent(id)}/events?follow=1`);
  stream.addEventListener("journal", message => {
    const event = JSON.parse(message.data);
    if (event.kind === "step") {
      const cell = document.querySelector(`.step[data-index="${event.step}"]`);
      if (cell) cell.dataset.state = event.message;
    }
    soon();
  });
  stream.addEventListener("end", () => soon());
}

function elapsed(started) {
  return started ? (Date.now() - Date.parse(started)) / 1000 : null;
}

function remaining(w) {
  const done = w.nodes.filter(v => v.completed && v.wall);
  const left = new Set(w.steps.filter(s => s.state === "pending").map(s => s.node)).size;
  if (!done.length || !left || !["running", "pending"].includes(w.state)) return "";
  const mean = done.reduce((a, v) => a + v.wall, 0) / done.length;
  return ` · about ${(mean * left).toFixed(0)} s to go`;
}

function action(id, name, allowed) {
  // enabled exactly when the CLI would accept it; else the CLI's reason and exit code
  const why = allowed[name];
  const button = el("button", {type: "button", id: `action-${name}`, disabled: why !== null},
                    name[0].toUpperCase() + name.slice(1));
  button.onclick = async () => {
    button.disabled = true;
    try {
      await api(`/api/workflows/${encodeURIComponent(id)}/${name}`, {});
      if (name !== "stop") route();      // a resume or revert streams on from the journal
    } catch (e) { view.append(fail(e)); }
  };
  const reason = why ? ` ${why.message}` + (why.exit_code ? ` (exit ${why.exit_code})` : "")
                     : "";
  return el("div", {class: "action"}, button, reason ? el("span", {class: "why"}, reason)
                                                     : null);
}

function stepRows(steps) {
  const rows = [];
  for (const s of steps) {
    const last = rows[rows.length - 1];
    const cell = el("span", {class: "step", "data-index": s.index, "data-state": s.state,
      title: `${s.servers.join(", ")} · ${s.state} · tries ${s.attempts}` +
             (s.error ? ` · ${s.error}` : "")}, s.name);
    if (last && last.visit === s.visit) last.cells.push(cell);
    else rows.push({visit: s.visit, batch: s.batch, node: s.node, cells: [cell]});
  }
  return table(["batch", "node", "steps"], rows.map(r => [
    String(r.batch), r.node, el("div", {class: "steps"}, r.cells)]));
}

function visitRows(nodes, steps) {
  // each node's time out of rotation (from its drain to its ready) on one timeline
  const time = x => (x ? Date.parse(x) / 1000 : null);
  const starts = steps.map(s => time(s.started)).filter(x => x !== null);
  const ends = steps.map(s => time(s.ended)).filter(x => x !== null);
  const t0 = Math.min(...starts), span = Math.max(0.001, Math.max(...ends, ...starts) - t0);
  const rows = nodes.map(v => {
    const visit = steps.filter(s => s.visit === v.visit);
    const drain = visit.find(s => s.name === "drain");
    const ready = visit.find(s => s.name === "ready");
    const from = drain ? time(drain.started) : null;
    const to = ready && ready.state === "done" ? time(ready.ended) : null;
    const bar = el("div", {class: "bar"});
    if (from !== null) {
      bar.style.marginLeft = `${(100 * (from - t0) / span).toFixed(2)}%`;
      bar.style.width = `${(100 * ((to ?? t0 + span) - from) / span).toFixed(2)}%`;
    }
    return [String(v.batch ?? ""), v.node, seconds(v.out_of_rotation),
            el("div", {class: "track"}, bar), seconds(v.wall)];
  });
  return starts.length ? table(["batch", "node", "out of rotation", "timeline", "wall"], rows)
                       : "";
}

function witnessLine(w) {
  if (w.unavailable) return `The load balancer's counters: ${w.unavailable}`;
  return `${w.source} saw ${w.requests} requests during this workflow: ${w.errors} errors ` +
    `(${w.connection_errors} connection, ${w.response_errors} response, ${w.http_5xx} 5xx)` +
    `, ${w.retries} retries, ${w.redispatches} redispatches`;
}

// -- history ----------------------------------------------------------------------------

async function historyView(mine) {
  const [workflows, live] = await Promise.all([api("/api/workflows"), api("/api/live")]);
  if (mine !== shown) return;
  const rows = workflows.map(w => [el("a", {href: `#/workflows/${w.id}`}, w.id), w.kind,
    stateOf(w.state), w.started || "", seconds(w.duration), (w.targets || []).join(", ")]);
  const updates = live.flatMap(l => l.updates.map(u => [l.name, u.kind, stateOf(u.state),
    u.facts ? `${u.facts.blackout_ms} ms` : "", u.home]));
  view.replaceChildren(el("h1", {}, "History"),
    table(["workflow", "kind", "state", "started", "duration", "targets"], rows),
    el("h2", {}, "Live updates on this host"),
    updates.length ? table(["workload", "kind", "state", "blackout", "home"], updates)
                   : el("p", {class: "why"}, "none"));
}

// -- routing ----------------------------------------------------------------------------

async function route() {
  if (stream) { stream.close(); stream = null; }
  const mine = ++shown;
  const hash = location.hash || "#/";
  const page = hash.startsWith("#/workflows/") ? "workflow" : hash === "#/new" ? "new"
             : hash === "#/history" ? "history" : "domain";
  for (const a of document.querySelectorAll("nav a"))
    a.classList.toggle("current", a.dataset.nav === page);
  try {
    const id = page === "workflow" ? decodeURIComponent(hash.slice(12)) : null;
    if (id) await workflowView(id, mine);
    else if (page === "new") await newView(mine);
    else if (page === "history") await historyView(mine);
    else await domainView(mine);
  } catch (e) { if (mine === shown) view.replaceChildren(fail(e)); }
}

window.addEventListener("hashchange", route);
route();
