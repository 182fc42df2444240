// Cordon's console: hosts and their sandboxes, violations as they come and over time, a
// sandbox's sessions (who ran what, under which rules, since when), its timeline (paged both
// ways, filtered, searched) and containment, offered by role and state, each action confirmed
// and followed to its result.
// Plain JavaScript against the collector's API; every value from the API is set as text,
// never as HTML.
"use strict";

const VIOLATIONS = ["network_denied", "dns_denied", "syscall_denied", "file_denied", "other_denied"];
const KINDS = [...VIOLATIONS, "exec", "fork", "exit", "events_lost", "contained", "responder_action", "session_started"];
const SEVERITIES = ["info", "low", "medium", "high", "critical"];
/// Events a page of a timeline shows.
const PAGE = 100;
/// Who is signed in (`GET /api/v1/whoami`): `name` and `role`.
let me = null;
let stopStream = null;

// --- API -----------------------------------------------------------------------------------

function token() { return sessionStorage.getItem("cordon-token"); }

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { signOut("Your token is not (or no longer) valid."); }
  if (!response.ok) { throw new Error(body.error || response.statusText); }
  return body;
}

/// `?a=1&b=2` of the values given, the empty ones left out.
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") { q.set(k, v); }
  }
  const text = q.toString();
  return text ? "?" + text : "";
}

// Saves a sandbox's whole timeline as a file (JSON lines or CSV), every page of it, oldest
// first: fetched with the token (a plain link cannot send it), then handed to the browser.
async function download(host, sandbox, format) {
  const parts = [];
  let cursor = "";
  for (;;) {
    const response = await fetch("/api/v1/events" + query({ order: "asc", limit: 1000, format, host, sandbox, cursor }),
      { headers: { "Authorization": "Bearer " + token() } });
    if (!response.ok) { throw new Error((await response.json().catch(() => ({}))).error || response.statusText); }
    let text = await response.text();
    // Every page of CSV starts with the header: keep the first one only.
    if (format === "csv" && parts.length > 0) { text = text.slice(text.indexOf("\n") + 1); }
    parts.push(text);
    cursor = response.headers.get("x-next-cursor");
    if (!cursor) { break; }
  }
  const type = format === "csv" ? "text/csv" : "application/x-ndjson";
  const url = URL.createObjectURL(new Blob(parts, { type }));
  const a = el("a", { href: url, download: `${sandbox}.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Server-Sent Events over fetch (EventSource cannot send the token header).
// The live stream. The collector ends a stream that falls behind (after `event: lost`) or
// has replayed a page of what was missed; this reconnects with the last event's id, so nothing
// is skipped. Refused (429: too many streams), it says so and tries again later.
function stream(path, onEvent) {
  const controller = new AbortController();
  let lastId = null;
  const say = (text) => {
    const feed = document.getElementById("feed");
    if (feed) { feed.prepend(el("p", { class: "error" }, text)); }
  };
  const once = async () => {
    const headers = { "Authorization": "Bearer " + token() };
    if (lastId !== null) { headers["Last-Event-ID"] = lastId; }
    const response = await fetch(path, { headers, signal: controller.signal });
    if (response.status === 401) { signOut("Your token is not (or no longer) valid."); return false; }
    if (response.status === 429) { say("Live feed: " + (await response.json()).error + "; trying again in 10 s."); return 10000; }
    if (!response.ok) { throw new Error("the live stream was refused: " + response.status); }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { return 1000; }
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end).split("\n");
        buffer = buffer.slice(end + 2);
        const data = block.filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
        const kind = (block.find((l) => l.startsWith("event:")) || "event:message").slice(6).trim();
        const id = block.find((l) => l.startsWith("id:"));
        if (id) { lastId = id.slice(3).trim(); }
        if (data && kind === "message") { onEvent(JSON.parse(data)); }
      }
    }
  };
  (async () => {
    for (;;) {
      try {
        const wait = await once();
        if (wait === false) { return; }
        await new Promise((resolve) => setTimeout(resolve, wait));
      } catch (e) {
        if (e.name === "AbortError") { return; }
        say("Live feed stopped: " + e.message + " (reload to retry)");
        return;
      }
    }
  })();
  return () => controller.abort();
}

// --- DOM helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) { continue; }
    if (k === "class") { node.className = v; } else if (k.startsWith("on")) { node.addEventListener(k.slice(2), v); } else { node.setAttribute(k, v === true ? "" : v); }
  }
  // Nothing for what is absent (`append` would show a null as the text "null").
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) { node.append(c instanceof Node ? c : String(c)); }
  }
  return node;
}

/// An SVG element (charts).
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) { node.setAttribute(k, v); }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) { node.append(c instanceof Node ? c : String(c)); }
  }
  return node;
}

/// A table whose cells each carry their column's name (a phone shows the rows as cards,
/// each value under its name).
function table(headers, rows, empty) {
  if (rows.length === 0) { return el("p", { class: "empty" }, empty); }
  for (const row of rows) {
    [...row.children].forEach((cell, i) => cell.setAttribute("data-label", headers[i]));
  }
  return el("table", { class: "rows" }, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

/// A time as the viewer reads it: date and time in their time zone, named. Takes the API's
/// RFC 3339 text or its nanoseconds since the epoch.
function when(t) {
  if (t === null || t === undefined || t === "") { return "—"; }
  const d = typeof t === "number" ? new Date(t / 1e6) : new Date(t);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
}

function ago(ns) {
  const s = Math.max(0, Math.round((Date.now() - Number(ns) / 1e6) / 1000));
  if (s < 60) { return s + " s ago"; }
  if (s < 3600) { return Math.round(s / 60) + " min ago"; }
  if (s < 172800) { return Math.round(s / 3600) + " h ago"; }
  return Math.round(s / 86400) + " days ago";
}

function state(text) { return el("span", { class: "state state-" + text }, text); }

/// How much an event matters, in its colour and in words (never colour alone).
function severity(level) {
  const name = level || "info";
  return el("span", { class: "sev sev-" + name, "data-severity": name }, name);
}

function hostLink(h) { return el("a", { href: "#/host/" + encodeURIComponent(h), "data-host": h }, h); }

function sandboxHref(h, s, params = {}) {
  return "#/host/" + encodeURIComponent(h) + "/sandbox/" + encodeURIComponent(s) + query(params);
}

function sandboxLink(h, s) { return el("a", { href: sandboxHref(h, s), "data-sandbox": s }, s); }

// Which layer of the sandbox refused a file access, as the terminal says it.
function fileRule(e) {
  switch (e.layer) {
    case "deny": return e.rule ? ` (denied by the profile: ${e.rule})` : " (denied by the profile)";
    case "read_only": return e.rule ? ` (read-only: ${e.rule})` : " (read-only)";
    case "noexec": return e.rule ? ` (no exec in ${e.rule})` : " (no exec)";
    case "not_in_view": return " (not in the profile's view)";
    case "unplaced": return " (refused; the path could not be placed in the profile)";
    default: return "";
  }
}

// What an event says, in a line; a denial an audited sandbox was let through says so first.
function describe(e) {
  const line = describeKind(e);
  return e.enforced === false ? `audit, let through: ${line}` : line;
}

function describeKind(e) {
  switch (e.kind) {
    case "network_denied": return `connect to ${e.address}:${e.port}/${e.protocol}${e.domain ? " (" + e.domain + ")" : ""} denied: ${e.reason}`;
    case "dns_denied": return `DNS query for ${e.domain} (${e.query_type}) refused${e.reason ? ": " + e.reason : ""}`;
    case "syscall_denied": return `syscall ${e.syscall} denied`;
    case "file_denied": return `${e.access} of ${e.path}${e.target ? " (→ " + e.target + ")" : ""} denied${fileRule(e)}`;
    case "other_denied": return `${e.blockers} denied (${e.detail})`;
    case "exec": return `exec ${e.filename}`;
    case "fork": return `fork → ${e.child_pid}`;
    case "exit": return e.signal ? `killed by signal ${e.signal}` : `exit ${e.code ?? "(no code)"}`;
    case "events_lost": return `${e.count} events lost (${e.reason})`;
    case "contained": return `contained: ${e.action}`;
    case "session_started": return `session started for ${userOf(e)}: ${(e.command || []).join(" ")} in ${e.workspace}`;
    case "responder_action": return `${e.action} by ${actorOf(e.actor)}: ${e.result}${e.error ? " — " + e.error : ""}${e.unseen ? ` (on events lost unseen, ${e.unseen}: one may have been what the rule watches for)` : ""}`;
    default: return e.kind;
  }
}

function userOf(started) { return started.user || `uid ${started.uid}`; }

function actorOf(actor) {
  if (!actor) { return "?"; }
  const name = actor.name || (actor.uid !== undefined ? `uid ${actor.uid}` : "");
  return name ? `${name} (${actor.via})` : actor.via;
}

function who(e) { return e.process ? `${e.process.comm} (${e.process.pid})` : ""; }

function times(e) { return e.count ? ` ×${e.count}` : ""; }

/// An event's row: its time, severity, process and what happened; a violation marked, one
/// an audit let through dashed.
function eventRow(e, extra = []) {
  const classes = ["event", "severity-" + (e.severity || "info")];
  if (VIOLATIONS.includes(e.kind)) { classes.push("violation"); }
  if (e.enforced === false) { classes.push("audited"); }
  return el("tr", { class: classes.join(" "), "data-kind": e.kind, "data-severity": e.severity || "info", "data-seq": String(e.seq) },
    el("td", { class: "time", title: e.time }, when(e.time)),
    el("td", { class: "level" }, severity(e.severity)),
    extra,
    el("td", { class: "proc" }, who(e)),
    el("td", { class: "what" }, describe(e) + times(e)));
}

// --- The chart of violations over time -----------------------------------------------------

/// Violations of `params` (host, session, ...) over a range, in bars stacked by severity,
/// counted by the collector (`GET /api/v1/events/histogram`).
async function violationChart(id, title, params) {
  const h = await api("/api/v1/events/histogram" + query({ kind: VIOLATIONS.join(","), buckets: 60, ...params }));
  return chart(id, title, h);
}

function chart(id, title, h) {
  const view = document.getElementById("view");
  const width = Math.max(300, Math.min(1160, (view && view.clientWidth) || 720));
  const height = 150, left = 40, right = 8, top = 10, bottom = 24;
  const counts = h.buckets.map((b) => b.count);
  const most = niceCeiling(Math.max(1, ...counts));
  const plotW = width - left - right, plotH = height - top - bottom;
  const barW = plotW / h.buckets.length;
  const y = (n) => top + plotH - (n / most) * plotH;
  const seconds = h.bucket_seconds;
  const axis = [
    svg("line", { class: "axis", x1: left, y1: top + plotH, x2: width - right, y2: top + plotH }),
    ...[most, most / 2].filter(Number.isInteger).map((n) => [
      svg("line", { class: "grid", x1: left, y1: y(n), x2: width - right, y2: y(n) }),
      svg("text", { class: "tick", x: left - 6, y: y(n) + 4, "text-anchor": "end" }, String(n)),
    ]).flat(),
    svg("text", { class: "tick", x: left - 6, y: top + plotH + 4, "text-anchor": "end" }, "0"),
  ];
  // A label (and a tick) every so many buckets, at the bucket's start, as many as fit: about
  // 7 px a character, and a gap.
  const texts = h.buckets.map((b) => tickLabel(b.start, seconds, h));
  const room = 7 * Math.max(...texts.map((t) => t.length)) + 16;
  const every = Math.max(1, Math.ceil(room / barW));
  const labels = texts.map((text, i) => i % every === 0 && left + i * barW + room - 16 <= width
    ? [svg("line", { class: "axis", x1: left + i * barW, y1: top + plotH, x2: left + i * barW, y2: top + plotH + 4 }),
      svg("text", { class: "tick", x: left + i * barW, y: height - 6 }, text)]
    : []).flat();
  const bars = h.buckets.map((b, i) => {
    let base = 0;
    const stack = SEVERITIES.filter((s) => b.severity[s]).map((s) => {
      const n = b.severity[s];
      const rect = svg("rect", { class: "bar fill-" + s, "data-severity": s, x: left + i * barW + 1, width: Math.max(1, barW - 2), y: y(base + n), height: y(base) - y(base + n) });
      base += n;
      return rect;
    });
    const detail = SEVERITIES.filter((s) => b.severity[s]).map((s) => `${b.severity[s]} ${s}`).join(", ");
    return svg("g", { class: "bucket", "data-count": String(b.count), "data-start": b.start },
      svg("title", {}, `${when(b.start)}, ${span(seconds)}: ${b.count} violation${b.count === 1 ? "" : "s"}${detail ? " (" + detail + ")" : ""}`),
      stack);
  });
  const totals = SEVERITIES.map((s) => [s, h.buckets.reduce((sum, b) => sum + (b.severity[s] || 0), 0)]).filter(([, n]) => n > 0);
  const picture = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}: ${h.total} violations` }, axis, labels, bars);
  return el("figure", { class: "chart", id, "data-total": String(h.total), "data-buckets": String(h.buckets.length) },
    el("figcaption", {}, el("strong", {}, title), ` — ${h.total} violation${h.total === 1 ? "" : "s"}, per ${span(seconds)}, ${when(h.since)} to ${when(h.until)}`),
    picture,
    el("p", { class: "legend" }, totals.length
      ? totals.map(([s, n]) => [severity(s), ` ${n}  `]).flat()
      : el("span", { class: "empty" }, "No violations in this range.")));
}

/// 1, 2, 5, 10, 20, 50, ... at or above `n`.
function niceCeiling(n) {
  for (let unit = 1; ; unit *= 10) {
    for (const step of [1, 2, 5]) { if (step * unit >= n) { return step * unit; } }
  }
}

/// A bucket's width in words.
function span(seconds) {
  if (seconds < 60) { return `${seconds} s`; }
  if (seconds < 3600) { return `${seconds / 60} min`; }
  if (seconds < 86400) { return `${seconds / 3600} h`; }
  return `${seconds / 86400} d`;
}

/// A tick of the time axis: the time of day, with the date when the range spans days.
function tickLabel(start, seconds, h) {
  const d = new Date(start);
  const days = (Date.parse(h.until) - Date.parse(h.since)) / 86400000;
  const time = { hour: "2-digit", minute: "2-digit", ...(seconds < 60 ? { second: "2-digit" } : {}) };
  return d.toLocaleString(undefined, days > 1 ? { month: "short", day: "numeric", ...(seconds < 86400 ? time : {}) } : time);
}

// --- Views ---------------------------------------------------------------------------------

async function hostsView(view) {
  document.getElementById("crumbs").replaceChildren("Hosts");
  const [{ hosts }, recent, over, outputs] = await Promise.all([
    api("/api/v1/hosts"),
    api("/api/v1/events" + query({ order: "desc", limit: 50, kind: VIOLATIONS.join(",") })),
    violationChart("chart-all", "Violations on every host, the last 24 hours", { since: "24h" }),
    api("/api/v1/outputs").then((r) => r.outputs).catch(() => []),
  ]);
  const rows = hosts.map((h) => el("tr", {},
    el("td", {}, hostLink(h.name)),
    el("td", {}, state(h.online ? "online" : "offline")),
    el("td", {}, String(h.sandboxes.length)),
    el("td", {}, ago(h.last_seen_ns)),
    el("td", { class: h.rejected ? "error" : "" }, String(h.rejected || 0))));
  const feed = el("tbody", { id: "feed-rows" });
  view.replaceChildren(
    el("h1", {}, "Hosts"),
    table(["Host", "State", "Sandboxes", "Last seen", "Events set aside"], rows, "No host has reported yet."),
    ...outputsTable(outputs),
    el("h2", {}, "Violations"),
    over,
    el("h2", {}, "Violations, newest first (live)"),
    el("div", { id: "feed" }, el("table", { class: "rows" }, el("thead", {}, el("tr", {}, ["Time", "Severity", "Host", "Sandbox", "Process", "What"].map((h) => el("th", {}, h)))), feed)));
  const row = (e) => {
    const r = eventRow(e, [el("td", { class: "name" }, hostLink(e.host)), el("td", { class: "name" }, sandboxLink(e.host, e.sandbox))]);
    [...r.children].forEach((cell, i) => cell.setAttribute("data-label", ["Time", "Severity", "Host", "Sandbox", "Process", "What"][i]));
    return r;
  };
  // What happened before this page opened first, then what comes live on top of it.
  for (const e of recent.events) { feed.append(row(e)); }
  if (recent.events.length === 0) { feed.append(el("tr", { class: "empty-row" }, el("td", { colspan: 6, class: "empty" }, "No violations stored."))); }
  stopStream = stream("/api/v1/stream?kind=" + VIOLATIONS.join(","), (e) => {
    if (recent.events.some((r) => r.id === e.id)) { return; }
    feed.querySelector(".empty-row")?.remove();
    feed.prepend(row(e));
    while (feed.children.length > 200) { feed.lastChild.remove(); }
  });
}

/// Where the collector sends events on (`[[output]]`), and how each is doing: a heading
/// and a table, or nothing when there is no output.
function outputsTable(outputs) {
  if (!outputs || outputs.length === 0) { return []; }
  const rows = outputs.map((o) => {
    const failing = o.last_error && (!o.last_success || Date.parse(o.last_error.time) > Date.parse(o.last_success));
    return el("tr", { "data-output": o.name },
      el("td", { class: "name" }, o.name),
      el("td", {}, o.type),
      el("td", { class: "mono" }, o.destination),
      el("td", {}, state(failing ? "failing" : o.lag > 0 ? "sending" : "ok")),
      el("td", {}, String(o.sent)),
      el("td", { class: o.failures ? "error" : "" }, String(o.failures)),
      el("td", {}, String(o.lag)),
      el("td", {}, o.last_success ? when(o.last_success) : "never"),
      el("td", { class: "error" }, o.last_error ? o.last_error.message : ""));
  });
  return [el("h2", {}, "Outputs"),
    table(["Output", "Type", "Destination", "State", "Sent", "Failures", "Behind", "Last delivery", "Last error"], rows, "")];
}

async function hostView(view, host) {
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Hosts"), " / ", host);
  const [data, { commands }, { rejected }, over] = await Promise.all([
    api("/api/v1/hosts/" + encodeURIComponent(host) + "/sandboxes"),
    api("/api/v1/commands" + query({ limit: 20, host })),
    api("/api/v1/hosts/" + encodeURIComponent(host) + "/rejected?limit=20"),
    violationChart("chart-host", `Violations on ${host}, the last 24 hours`, { host, since: "24h" }),
  ]);
  const aside = rejected.map((r) => el("tr", {},
    el("td", {}, when(r.received_ns)), el("td", {}, r.reason), el("td", {}, r.event_id || ""),
    el("td", {}, r.detail), el("td", {}, el("code", {}, r.excerpt.slice(0, 200)))));
  const live = data.live.map((s) => el("tr", {},
    el("td", { class: "name" }, sandboxLink(host, s.name)), el("td", {}, s.profile),
    el("td", {}, s.uid === undefined ? "" : `uid ${s.uid}`), el("td", {}, String(s.procs)),
    el("td", {}, state(s.state)), el("td", {}, state(s.network)),
    el("td", { class: "mono", "data-session": s.session || "" }, s.session || "")));
  const seen = data.seen.map((s) => el("tr", {},
    el("td", { class: "name" }, sandboxLink(host, s.name)), el("td", {}, s.profile), el("td", {}, String(s.events)),
    el("td", { class: s.violations ? "error" : "" }, String(s.violations)), el("td", {}, ago(s.last_ns))));
  view.replaceChildren(
    el("h1", {}, host),
    over,
    el("h2", {}, "Running sandboxes"),
    table(["Sandbox", "Profile", "User", "Processes", "State", "Network", "Session"], live, "No sandbox runs on this host."),
    el("h2", {}, "Sandboxes in the last day's events"),
    table(["Sandbox", "Profile", "Events", "Violations", "Last event"], seen, "No events from this host in the last day."),
    el("h2", {}, "Commands"),
    commandTable(commands, true),
    el("h2", {}, "Events set aside"),
    table(["Received", "Reason", "Event id", "Why", "What was sent"], aside,
      "The collector has stored every event this host sent."));
}

function commandTable(commands, withSandbox) {
  const headers = ["Issued", ...(withSandbox ? ["Sandbox"] : []), "Action", "By", "Status", "Error"];
  return table(headers, commands.map((c) => el("tr", { "data-command": c.id },
    el("td", {}, when(c.issued_ns)), withSandbox ? el("td", {}, sandboxLink(c.host, c.sandbox)) : null,
    el("td", {}, c.action), el("td", {}, c.issued_by),
    el("td", {}, state(c.status)), el("td", {}, c.error || ""))), "No commands yet.");
}

/// A sandbox: its state and the actions it offers, its sessions with their charts, its process
/// tree and its timeline. `params`: the timeline's filters and page (see `timeline`).
async function sandboxView(view, host, sandbox, params) {
  document.getElementById("crumbs").replaceChildren(
    el("a", { href: "#/" }, "Hosts"), " / ", hostLink(host), " / ", sandbox);
  const [data, started, tree, page] = await Promise.all([
    api("/api/v1/hosts/" + encodeURIComponent(host) + "/sandboxes"),
    api("/api/v1/events" + query({ host, sandbox, kind: "session_started", limit: 5 })),
    processTree(host, sandbox),
    timeline(host, sandbox, params),
  ]);
  const live = data.live.find((s) => s.name === sandbox) || null;
  const sessions = await Promise.all(started.events.map((e) => sessionFacts(host, e, live)));
  const status = el("p", { id: "command-status", "aria-live": "polite" });
  const controls = el("div", { id: "controls" });
  showControls(controls, status, host, sandbox, live);
  const { commands } = await api("/api/v1/commands" + query({ host, sandbox, limit: 10 }));
  if (sessions.length === 0) {
    sessions.push(el("p", { class: "empty" }, "No session record: an older agent, or its start is past the retention."),
      await violationChart("chart-sandbox", `Violations of ${sandbox}, the last 24 hours`, { host, sandbox, since: "24h" }));
  }
  view.replaceChildren(
    el("h1", {}, sandbox),
    controls,
    status,
    el("h2", {}, started.events.length > 1 ? "Sessions, newest first" : "Session"),
    ...sessions,
    el("h2", {}, "Process tree"),
    tree,
    el("h2", { id: "timeline" }, "Timeline"),
    page,
    el("h2", {}, "Commands"),
    el("div", { id: "commands" }, commandTable(commands, false)));
}

/// The sandbox's state as its host last reported it, and the actions that make sense for it
/// and for who is signed in.
function showControls(controls, status, host, sandbox, live) {
  const line = el("p", { id: "sandbox-state" }, runs(live)
    ? ["Running on ", hostLink(host), ": ", state(live.state), ", network ", state(live.network), `, ${live.procs} process${live.procs === 1 ? "" : "es"}`]
    : live ? ["Not running on ", hostLink(host), ": no process left (as it last reported)."]
    : ["Not running on ", hostLink(host), " (as it last reported)."]);
  let actions;
  if (!me || (me.role !== "responder" && me.role !== "admin")) {
    actions = el("p", { id: "actions-note", class: "note" }, `Signed in as a ${me ? me.role : "viewer"}: containing a sandbox takes a responder's token.`);
  } else if (!runs(live)) {
    actions = el("p", { id: "actions-note", class: "note" }, "Nothing to contain: the sandbox does not run.");
  } else {
    actions = el("div", { class: "actions" }, offered(live).map((a) => el("button", {
      "data-action": a, class: a === "kill" || a === "isolate" ? "danger" : "",
      onclick: () => act(host, sandbox, a, status, controls),
    }, a)));
  }
  controls.replaceChildren(line, actions);
}

/// Whether the host last reported the sandbox with a process in it (a killed one's empty
/// cgroup may outlive it a little).
function runs(live) { return Boolean(live && live.procs > 0); }

/// What a running sandbox can be asked: thaw a frozen one (or freeze it), release an isolated
/// one (or isolate it: not one without any network), and kill.
function offered(live) {
  const out = [];
  if (live.network === "isolated") { out.push("release"); } else if (live.network !== "none") { out.push("isolate"); }
  out.push(live.state === "frozen" ? "thaw" : "freeze");
  out.push("evidence");
  out.push("kill");
  return out;
}

const CONSEQUENCES = {
  isolate: "Its network is cut at once: every connection it has or tries is refused until it is released.",
  release: "Its network goes back to what its profile allows.",
  freeze: "Its processes stop where they are until it is thawed.",
  thaw: "Its processes carry on from where they stopped.",
  kill: "Every process in it is killed. This cannot be undone.",
  evidence: "Its host writes an archive of its processes (argv, executables and their SHA-256, open files and sockets, memory maps), the files it changed, its events and its profile, and sends it here. It stays as it is (frozen or running) and is not told.",
};

/// What the host must report once `action` took effect.
function tookEffect(action, live) {
  switch (action) {
    case "isolate": return live && live.network === "isolated";
    case "release": return live && live.network !== "isolated";
    case "freeze": return live && live.state === "frozen";
    case "thaw": return live && live.state !== "frozen";
    case "evidence": return true;
    default: return !runs(live);
  }
}

/// Asks for a confirmation naming the sandbox and its host, issues the command and follows
/// it (queued, delivered, done or failed), then shows the state the host reports after it.
async function act(host, sandbox, action, status, controls) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").replaceChildren(
    el("strong", {}, `${action[0].toUpperCase() + action.slice(1)} the sandbox ${sandbox} on ${host}?`),
    el("br"), CONSEQUENCES[action]);
  const yes = document.getElementById("confirm-yes");
  yes.textContent = action[0].toUpperCase() + action.slice(1);
  yes.className = action === "kill" || action === "isolate" ? "danger" : "primary";
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "yes") { return; }
  const say = (...what) => status.replaceChildren(`${action} ${sandbox} on ${host}: `, ...what.flat(2));
  controls.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  say("sending…");
  let command;
  try {
    command = await api("/api/v1/commands", { method: "POST", body: JSON.stringify({ host, sandbox, action }) });
    const steps = [command.status];
    say(state(command.status));
    while (command.status === "queued" || command.status === "delivered") {
      await new Promise((r) => setTimeout(r, 300));
      command = await api("/api/v1/commands/" + command.id);
      if (steps[steps.length - 1] !== command.status) { steps.push(command.status); }
      say(steps.map((s, i) => [i ? " → " : "", state(s)]).flat());
    }
    const end = command.status === "done" ? ` (${command.took_ms} ms on the host)`
      : command.status === "expired" ? ": the host did not fetch it in time (is its cordond running and connected?)"
      : command.error ? ": " + command.error : "";
    say(steps.map((s, i) => [i ? " → " : "", state(s)]).flat(), end);
  } catch (e) {
    status.replaceChildren(el("span", { class: "error" }, `${action} ${sandbox} on ${host} refused: ${e.message}`));
  }
  // The state the host reports now (on its next poll, which follows the result at once).
  let live = null;
  for (let i = 0; i < 20; i++) {
    const data = await api("/api/v1/hosts/" + encodeURIComponent(host) + "/sandboxes").catch(() => null);
    live = data ? data.live.find((s) => s.name === sandbox) || null : live;
    if (!command || command.status !== "done" || tookEffect(action, live)) { break; }
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!document.body.contains(controls)) { return; }
  if (action === "evidence" && command && command.status === "done") {
    await refreshEvidence(host, live && live.session);
  }
  showControls(controls, status, host, sandbox, live);
  const { commands } = await api("/api/v1/commands" + query({ host, sandbox, limit: 10 }));
  document.getElementById("commands")?.replaceChildren(commandTable(commands, false));
}

/// Who ran what, under which rules, where, since when and until when (or that it still
/// runs), and its violations over that time.
async function sessionFacts(host, started, live) {
  const running = runs(live) && live.session === started.session;
  let end;
  let until;
  if (running) {
    end = el("dd", { "data-end": "running" }, "still ", state("running"), ", as its host last reported");
  } else {
    const last = (await api("/api/v1/events" + query({ host, session: started.session, limit: 1 }))).events[0] || started;
    end = el("dd", { "data-end": last.time, title: last.time }, `ended; its last event ${when(last.time)} (${describe(last)})`);
    until = new Date(Date.parse(last.time) + 1000).toISOString();
  }
  const picture = await violationChart("chart-session-" + started.session, "Violations of this session",
    { host, session: started.session, since: started.time, until });
  return el("section", { class: "session", "data-session": started.session },
    el("dl", { class: "facts" },
      el("dt", {}, "Session"), el("dd", { class: "mono" }, started.session || ""),
      el("dt", {}, "User"), el("dd", {}, userOf(started)),
      el("dt", {}, "Command"), el("dd", { class: "mono" }, (started.command || []).join(" ")),
      el("dt", {}, "Profile"), el("dd", {}, started.profile, " ",
        el("span", { class: "mono muted", title: "sha256 " + started.profile_sha256 }, `sha256 ${String(started.profile_sha256 || "").slice(0, 16)}…`)),
      el("dt", {}, "Workspace"), el("dd", { class: "mono" }, started.workspace || ""),
      el("dt", {}, "Started"), el("dd", { title: started.time }, when(started.time)),
      el("dt", {}, running ? "Until" : "Ended"), end,
      el("dt", {}, "Evidence"), el("dd", {}, await evidenceList(started.session))),
    picture);
}

/// The evidence archives of a session at the collector (responders only: they may hold what
/// the agent held), each with its manifest's SHA-256 and a download.
async function evidenceList(session) {
  const box = el("div", { class: "evidence", "data-evidence": session || "" });
  if (!me || (me.role !== "responder" && me.role !== "admin")) {
    box.append(el("span", { class: "muted" }, "for responders"));
    return box;
  }
  let rows = [];
  try {
    rows = (await api("/api/v1/evidence" + query({ session }))).evidence;
  } catch (e) {
    box.append(el("span", { class: "error" }, "cannot list: " + e.message));
    return box;
  }
  if (rows.length === 0) {
    box.append(el("span", { class: "muted" }, "none collected"));
    return box;
  }
  box.append(el("ul", {}, rows.map((r) => el("li", { "data-id": r.id },
    el("button", { class: "link", onclick: () => downloadEvidence(r) }, "Download"), " ",
    when(new Date(r.received_ns / 1e6).toISOString()), `, ${(r.bytes / 1024).toFixed(0)} KiB, manifest `,
    el("span", { class: "mono", title: "sha256 " + r.manifest_sha256 }, r.manifest_sha256.slice(0, 16) + "…")))));
  return box;
}

/// Shows the session's archives again, for a while, until one more than before is listed
/// (the host sends it right after collecting).
async function refreshEvidence(host, session) {
  const box = session && document.querySelector(`[data-evidence="${session}"]`);
  if (!box) { return; }
  const before = box.querySelectorAll("li").length;
  for (let i = 0; i < 20; i++) {
    const fresh = await evidenceList(session);
    if (fresh.querySelectorAll("li").length > before || i === 19) {
      document.querySelector(`[data-evidence="${session}"]`)?.replaceWith(fresh);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/// Saves an archive, fetched with the token (a plain link cannot send it).
async function downloadEvidence(row) {
  const response = await fetch("/api/v1/evidence/" + encodeURIComponent(row.id),
    { headers: { "Authorization": "Bearer " + token() } });
  if (!response.ok) { throw new Error((await response.json().catch(() => ({}))).error || response.statusText); }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: `evidence-${row.sandbox}-${row.id}.tar.gz` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/// The processes of a sandbox, children under their parent: from its first 1000 process
/// events, with the violations of each among the newest 1000.
async function processTree(host, sandbox) {
  const [structure, violations] = await Promise.all([
    api("/api/v1/events" + query({ host, sandbox, kind: "exec,fork,exit", order: "asc", limit: 1000 })),
    api("/api/v1/events" + query({ host, sandbox, kind: VIOLATIONS.join(","), limit: 1000 })),
  ]);
  const procs = new Map();
  const get = (pid) => { if (!procs.has(pid)) { procs.set(pid, { pid, ppid: null, names: [], violations: 0, exit: null }); } return procs.get(pid); };
  for (const e of [...structure.events, ...violations.events]) {
    if (!e.process) { continue; }
    const p = get(e.process.pid);
    if (p.ppid === null) { p.ppid = e.process.ppid; }
    const name = e.kind === "exec" ? e.filename : (e.process.exe || e.process.comm);
    if (e.kind === "exec" || p.names.length === 0) { if (!p.names.includes(name)) { p.names.push(name); } }
    if (e.kind === "fork") { get(e.child_pid).ppid = e.process.pid; }
    if (e.kind === "exit") { p.exit = describe(e); }
    if (VIOLATIONS.includes(e.kind)) { p.violations += e.count || 1; }
  }
  if (procs.size === 0) { return el("p", { class: "empty" }, "No process events."); }
  const more = violations.next ? "+" : "";
  const children = (pid) => [...procs.values()].filter((p) => p.ppid === pid && p.pid !== pid);
  const item = (p) => el("li", { "data-pid": String(p.pid) },
    el("span", { class: "mono" }, String(p.pid)), " ", p.names.join(" → ") || "?",
    p.violations ? el("span", { class: "error" }, ` — ${p.violations}${more} violation${p.violations === 1 ? "" : "s"}`) : null,
    p.exit ? el("span", { class: "muted" }, ` (${p.exit})`) : null,
    list(children(p.pid)));
  const list = (ps) => ps.length ? el("ul", {}, ps.map(item)) : null;
  return el("div", { class: "tree" },
    list([...procs.values()].filter((p) => !procs.has(p.ppid) || p.ppid === p.pid)),
    structure.next ? el("p", { class: "note" }, "From the sandbox's first 1000 process events.") : null);
}

/// One page of a sandbox's timeline. `params` (from the address, so a page can be reloaded,
/// shared and gone back to): `kind` (one, or `violations`), `severity` (the least), `q` (free
/// text), `order` (`desc`, the default: newest first; `asc`; `severity`), and where the page
/// starts: `cursor` (after it, in the order) or `back` (before it: fetched in the opposite
/// order and turned round).
async function timeline(host, sandbox, params) {
  const order = params.order || "desc";
  const kind = params.kind === "violations" ? VIOLATIONS.join(",") : params.kind;
  const filters = { host, sandbox, kind, severity: params.severity, q: params.q, limit: PAGE };
  let events, forward, backward;
  if (params.back) {
    const opposite = order === "asc" ? "desc" : "asc";
    const page = await api("/api/v1/events" + query({ ...filters, order: opposite, cursor: params.back }));
    const beyond = page.next
      ? (await api("/api/v1/events" + query({ ...filters, limit: 1, order: opposite, cursor: page.next }))).events.length
      : 0;
    if (beyond === 0) {
      // Back at the start: the first page, whole.
      return timeline(host, sandbox, { ...params, back: "" });
    }
    events = page.events.reverse();
    forward = page.prev;
    backward = page.next;
  } else {
    const page = await api("/api/v1/events" + query({ ...filters, order, cursor: params.cursor }));
    events = page.events;
    forward = page.next;
    backward = params.cursor ? page.prev : null;
  }
  const here = (changes) => sandboxHref(host, sandbox, { kind: params.kind, severity: params.severity, q: params.q, order: params.order, ...changes });
  const words = {
    desc: ["← Newer", "Older →", "Newest"],
    asc: ["← Older", "Newer →", "Oldest"],
    severity: ["", "Less severe →", "Most severe"],
  }[order];
  const pager = (where) => el("nav", { class: "pager", id: "pager-" + where },
    el("a", { href: here({}), "data-page": "first", class: params.cursor || params.back ? "" : "disabled" }, words[2]),
    backward && order !== "severity" ? el("a", { href: here({ back: backward }), "data-page": "back" }, words[0]) : el("span", { class: "disabled" }, words[0]),
    forward ? el("a", { href: here({ cursor: forward }), "data-page": "forward" }, words[1]) : el("span", { class: "disabled" }, words[1]),
    el("span", { class: "muted", "data-shown": String(events.length) }, events.length
      ? `${events.length} event${events.length === 1 ? "" : "s"}, ${when(events[0].time)} – ${when(events[events.length - 1].time)}`
      : ""));
  return el("div", { id: "timeline-page" },
    filterForm(host, sandbox, params),
    pager("top"),
    table(["Time", "Severity", "Process", "What"], events.map((e) => eventRow(e)),
      params.kind || params.severity || params.q ? "No event of this sandbox matches." : "No events from this sandbox."),
    events.length > 20 ? pager("bottom") : null,
    el("p", { id: "timeline-export" }, "Download the whole timeline: ",
      el("button", { "data-export": "jsonl", onclick: () => download(host, sandbox, "jsonl").catch((e) => alert(e.message)) }, "JSON lines"), " ",
      el("button", { "data-export": "csv", onclick: () => download(host, sandbox, "csv").catch((e) => alert(e.message)) }, "CSV")));
}

/// The timeline's filters: a change of one shows its first page.
function filterForm(host, sandbox, params) {
  const option = (value, text, current) => el("option", { value, selected: value === (current || "") }, text);
  const kind = el("select", { id: "filter-kind", name: "kind" },
    option("", "every kind", params.kind), option("violations", "violations", params.kind),
    KINDS.map((k) => option(k, k.replace("_", " "), params.kind)));
  const least = el("select", { id: "filter-severity", name: "severity" },
    option("", "any severity", params.severity), SEVERITIES.slice(1).map((s) => option(s, `${s} or more`, params.severity)));
  const order = el("select", { id: "filter-order", name: "order" },
    option("", "newest first", params.order), option("asc", "oldest first", params.order), option("severity", "most severe first", params.order));
  const text = el("input", { id: "filter-q", name: "q", type: "search", value: params.q || "", placeholder: "path, domain, address, syscall, program" });
  const go = () => {
    location.hash = sandboxHref(host, sandbox, { kind: kind.value, severity: least.value, q: text.value.trim(), order: order.value }).slice(1);
  };
  for (const s of [kind, least, order]) { s.addEventListener("change", go); }
  const cleared = params.kind || params.severity || params.q;
  return el("form", { id: "timeline-filters", class: "filters", onsubmit: (ev) => { ev.preventDefault(); go(); } },
    el("label", {}, "Kind ", kind), el("label", {}, "Severity ", least), el("label", {}, "Order ", order),
    el("label", { class: "search" }, "Search ", text), el("button", { type: "submit" }, "Search"),
    cleared ? el("a", { href: sandboxHref(host, sandbox, { order: params.order }), id: "filter-clear" }, "clear the filters") : null);
}

// --- Routing and sign-in -------------------------------------------------------------------

async function route() {
  if (stopStream) { stopStream(); stopStream = null; }
  const view = document.getElementById("view");
  if (!token()) { return signOut(); }
  document.getElementById("sign-in").hidden = true;
  try {
    const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
    const parts = path.split("/").map(decodeURIComponent);
    const params = Object.fromEntries(new URLSearchParams(search || ""));
    if (parts[0] === "host" && parts[2] === "sandbox") { await sandboxView(view, parts[1], parts[3], params); }
    else if (parts[0] === "host") { await hostView(view, parts[1]); }
    else { await hostsView(view); }
  } catch (e) {
    view.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

function signOut(message) {
  sessionStorage.removeItem("cordon-token");
  me = null;
  if (stopStream) { stopStream(); stopStream = null; }
  document.getElementById("view").replaceChildren();
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = message || "";
}

async function signIn(secret) {
  sessionStorage.setItem("cordon-token", secret);
  try {
    me = await api("/api/v1/whoami");
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
    document.getElementById("sign-out").hidden = false;
    document.getElementById("token").value = "";
    await route();
  } catch (e) {
    signOut(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn(document.getElementById("token").value.trim());
  });
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  if (token()) { signIn(token()); } else { signOut(); }
});
