// Cordon's console: hosts and their sandboxes, a live violations feed, a sandbox's timeline
// (its process tree and violations in order), and containment with a confirmation.
// Plain JavaScript against the collector's API; every value from the API is set as text,
// never as HTML.
"use strict";

const VIOLATIONS = ["network_denied", "dns_denied", "syscall_denied", "file_denied", "other_denied"];
const ACTIONS = ["isolate", "release", "freeze", "thaw", "kill"];
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

// Saves a sandbox's whole timeline as a file (JSON lines or CSV), every page of it, oldest
// first: fetched with the token (a plain link cannot send it), then handed to the browser.
async function download(host, sandbox, format) {
  const parts = [];
  let cursor = "";
  for (;;) {
    const response = await fetch(`/api/v1/events?order=asc&limit=1000&format=${format}&host=${encodeURIComponent(host)}&sandbox=${encodeURIComponent(sandbox)}${cursor}`,
      { headers: { "Authorization": "Bearer " + token() } });
    if (!response.ok) { throw new Error((await response.json().catch(() => ({}))).error || response.statusText); }
    let text = await response.text();
    // Every page of CSV starts with the header: keep the first one only.
    if (format === "csv" && parts.length > 0) { text = text.slice(text.indexOf("\n") + 1); }
    parts.push(text);
    const next = response.headers.get("x-next-cursor");
    if (!next) { break; }
    cursor = "&cursor=" + encodeURIComponent(next);
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
    if (k === "class") { node.className = v; } else if (k.startsWith("on")) { node.addEventListener(k.slice(2), v); } else { node.setAttribute(k, v); }
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) { node.append(c instanceof Node ? c : String(c)); }
  }
  return node;
}

function table(headers, rows, empty) {
  if (rows.length === 0) { return el("p", { class: "empty" }, empty); }
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

function when(ns) {
  if (!ns) { return "—"; }
  return new Date(Number(ns) / 1e6).toLocaleString();
}

function ago(ns) {
  const s = Math.max(0, Math.round((Date.now() - Number(ns) / 1e6) / 1000));
  if (s < 60) { return s + " s ago"; }
  if (s < 3600) { return Math.round(s / 60) + " min ago"; }
  return Math.round(s / 3600) + " h ago";
}

function state(text) { return el("span", { class: "state-" + text }, text); }

function hostLink(h) { return el("a", { href: "#/host/" + encodeURIComponent(h), "data-host": h }, h); }

function sandboxLink(h, s) {
  return el("a", { href: "#/host/" + encodeURIComponent(h) + "/sandbox/" + encodeURIComponent(s), "data-sandbox": s }, s);
}

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
    case "dns_denied": return `DNS query for ${e.domain} (${e.query_type}) refused`;
    case "syscall_denied": return `syscall ${e.syscall} denied`;
    case "file_denied": return `${e.access} of ${e.path}${e.target ? " (→ " + e.target + ")" : ""} denied${fileRule(e)}`;
    case "other_denied": return `${e.blockers} denied (${e.detail})`;
    case "exec": return `exec ${e.filename}`;
    case "fork": return `fork → ${e.child_pid}`;
    case "exit": return e.signal ? `killed by signal ${e.signal}` : `exit ${e.code}`;
    case "events_lost": return `${e.count} events lost (${e.reason})`;
    case "contained": return `contained: ${e.action}`;
    case "session_started": return `session started for ${e.user || "uid " + e.uid}: ${(e.command || []).join(" ")} in ${e.workspace} (profile ${String(e.profile_sha256 || "").slice(0, 12)})`;
    case "responder_action": return `${e.action} by ${e.actor.name || e.actor.via} (${e.actor.via}): ${e.result}${e.error ? " — " + e.error : ""}`;
    default: return e.kind;
  }
}

// A time as the viewer reads it: date and time in their time zone, named.
function when(iso) {
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
}

function who(e) { return e.process ? `${e.process.comm} (${e.process.pid})` : ""; }

function times(e) { return e.count ? ` ×${e.count}` : ""; }

// --- Views ---------------------------------------------------------------------------------

async function hostsView(view) {
  document.getElementById("crumbs").replaceChildren("Hosts");
  const { hosts } = await api("/api/v1/hosts");
  const rows = hosts.map((h) => el("tr", {},
    el("td", {}, hostLink(h.name)),
    el("td", {}, state(h.online ? "online" : "offline")),
    el("td", {}, String(h.sandboxes.length)),
    el("td", {}, ago(h.last_seen_ns)),
    el("td", { class: h.rejected ? "violation" : "" }, String(h.rejected || 0))));
  const feed = el("tbody", { id: "feed-rows" });
  view.replaceChildren(
    el("h1", {}, "Hosts"),
    table(["Host", "State", "Sandboxes", "Last seen", "Events set aside"], rows, "No host has reported yet."),
    el("h2", {}, "Violations, newest first"),
    el("div", { id: "feed" }, el("table", {}, el("thead", {}, el("tr", {}, ["Time", "Host", "Sandbox", "Who", "What"].map((h) => el("th", {}, h)))), feed)));
  const row = (e) => el("tr", { class: "violation " + (e.enforced === false ? "audited " : "") + "severity-" + (e.severity || "info"), "data-kind": e.kind },
    el("td", { class: "mono", title: e.time }, when(e.time)),
    el("td", {}, hostLink(e.host)),
    el("td", {}, sandboxLink(e.host, e.sandbox)),
    el("td", {}, who(e)),
    el("td", {}, describe(e) + times(e)));
  // What happened before this page opened first, then what comes live on top of it.
  const recent = await api("/api/v1/events?order=desc&limit=50&kind=" + VIOLATIONS.join(","));
  for (const e of recent.events) { feed.append(row(e)); }
  stopStream = stream("/api/v1/stream?kind=" + VIOLATIONS.join(","), (e) => {
    if (recent.events.some((r) => r.id === e.id)) { return; }
    feed.prepend(row(e));
    while (feed.children.length > 200) { feed.lastChild.remove(); }
  });
}

async function hostView(view, host) {
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Hosts"), " / ", host);
  const [data, { commands }, { rejected }] = await Promise.all([
    api("/api/v1/hosts/" + encodeURIComponent(host) + "/sandboxes"),
    api("/api/v1/commands?limit=20&host=" + encodeURIComponent(host)),
    api("/api/v1/hosts/" + encodeURIComponent(host) + "/rejected?limit=20"),
  ]);
  const aside = rejected.map((r) => el("tr", {},
    el("td", {}, when(r.received_ns)), el("td", {}, r.reason), el("td", {}, r.event_id || ""),
    el("td", {}, r.detail), el("td", {}, el("code", {}, r.excerpt.slice(0, 200)))));
  const live = data.live.map((s) => el("tr", {},
    el("td", {}, sandboxLink(host, s.name)), el("td", {}, s.profile), el("td", {}, String(s.procs)),
    el("td", {}, state(s.state)), el("td", {}, state(s.network)),
    el("td", { class: "mono", "data-session": s.session || "" }, s.session || "")));
  const seen = data.seen.map((s) => el("tr", {},
    el("td", {}, sandboxLink(host, s.name)), el("td", {}, s.profile), el("td", {}, String(s.events)),
    el("td", {}, String(s.violations)), el("td", {}, ago(s.last_ns))));
  view.replaceChildren(
    el("h1", {}, host),
    el("h2", {}, "Running sandboxes"),
    table(["Sandbox", "Profile", "Processes", "State", "Network", "Session"], live, "No sandbox runs on this host."),
    el("h2", {}, "Sandboxes in the last day's events"),
    table(["Sandbox", "Profile", "Events", "Violations", "Last event"], seen, "No events from this host in the last day."),
    el("h2", {}, "Commands"),
    commandTable(commands),
    el("h2", {}, "Events set aside"),
    table(["Received", "Reason", "Event id", "Why", "What was sent"], aside,
      "The collector has stored every event this host sent."));
}

function commandTable(commands) {
  return table(["Issued", "Sandbox", "Action", "By", "Status", "Error"], commands.map((c) => el("tr", {},
    el("td", {}, when(c.issued_ns)), el("td", {}, c.sandbox), el("td", {}, c.action), el("td", {}, c.issued_by),
    el("td", {}, state(c.status)), el("td", {}, c.error || ""))), "No commands yet.");
}

// The timeline in time order, or the most severe first (`#/host/H/sandbox/S/severity`).
async function sandboxView(view, host, sandbox, bySeverity) {
  document.getElementById("crumbs").replaceChildren(
    el("a", { href: "#/" }, "Hosts"), " / ", hostLink(host), " / ", sandbox);
  const order = bySeverity ? "severity" : "asc";
  const [data, timeline] = await Promise.all([
    api("/api/v1/hosts/" + encodeURIComponent(host) + "/sandboxes"),
    api(`/api/v1/events?order=${order}&limit=1000&host=${encodeURIComponent(host)}&sandbox=${encodeURIComponent(sandbox)}`),
  ]);
  const base = `#/host/${encodeURIComponent(host)}/sandbox/${encodeURIComponent(sandbox)}`;
  const exports = el("p", { id: "timeline-export" }, "Download the whole timeline: ",
    el("button", { "data-export": "jsonl", onclick: () => download(host, sandbox, "jsonl").catch((e) => alert(e.message)) }, "JSON lines"), " ",
    el("button", { "data-export": "csv", onclick: () => download(host, sandbox, "csv").catch((e) => alert(e.message)) }, "CSV"));
  const sortLinks = el("p", { id: "timeline-order" }, "Order: ",
    bySeverity ? el("a", { href: base, "data-order": "time" }, "by time") : el("strong", { "data-current": "time" }, "by time"), " · ",
    bySeverity ? el("strong", { "data-current": "severity" }, "most severe first") : el("a", { href: base + "/severity", "data-order": "severity" }, "most severe first"));
  const live = data.live.find((s) => s.name === sandbox);
  const status = el("p", { id: "command-status" });
  const buttons = ACTIONS.map((a) => el("button", {
    "data-action": a, class: a === "kill" || a === "isolate" ? "danger" : "",
    onclick: () => act(host, sandbox, a, status),
  }, a));
  const events = timeline.events;
  // Nothing for what is absent (`replaceChildren` would show a null as the text "null").
  view.replaceChildren(...[
    el("h1", {}, sandbox),
    el("p", { id: "sandbox-state" }, live
      ? ["Running on ", hostLink(host), ": ", state(live.state), ", network ", state(live.network), `, ${live.procs} processes`]
      : ["Not running on ", hostLink(host), " (as it last reported)."]),
    sessionFacts(events.find((e) => e.kind === "session_started")),
    el("div", { class: "actions" }, buttons),
    status,
    el("h2", {}, "Process tree"),
    el("div", { class: "tree" }, processTree(events)),
    el("h2", {}, "Timeline"),
    sortLinks,
    exports,
    table(["Time", "Who", "What"], events.map((e) => el("tr", { class: (VIOLATIONS.includes(e.kind) ? "violation " : "") + (e.enforced === false ? "audited " : "") + "severity-" + (e.severity || "info"), "data-kind": e.kind, "data-severity": e.severity || "" },
      el("td", { class: "mono", title: e.time }, when(e.time)),
      el("td", {}, who(e)),
      el("td", {}, describe(e) + times(e)))), "No events from this sandbox."),
    timeline.next ? el("p", { class: "empty" }, "Showing the first 1000 events.") : null,
  ].filter((c) => c !== null));
}

// Who ran what, under which rules, where, and since when: the session's first event.
function sessionFacts(started) {
  if (!started) { return null; }
  return el("dl", { id: "session", class: "facts" },
    el("dt", {}, "Session"), el("dd", { class: "mono" }, started.session || ""),
    el("dt", {}, "User"), el("dd", {}, started.user || `uid ${started.uid}`),
    el("dt", {}, "Command"), el("dd", { class: "mono" }, (started.command || []).join(" ")),
    el("dt", {}, "Workspace"), el("dd", { class: "mono" }, started.workspace || ""),
    el("dt", {}, "Profile"), el("dd", { class: "mono" }, `${started.profile} (sha256 ${String(started.profile_sha256 || "").slice(0, 16)}…)`),
    el("dt", {}, "Started"), el("dd", { title: started.time }, when(started.time)));
}

// The processes of a sandbox's events, children under their parent.
function processTree(events) {
  const procs = new Map();
  const get = (pid) => { if (!procs.has(pid)) { procs.set(pid, { pid, ppid: null, names: [], violations: 0, exit: null }); } return procs.get(pid); };
  for (const e of events) {
    if (!e.process) { continue; }
    const p = get(e.process.pid);
    if (p.ppid === null) { p.ppid = e.process.ppid; }
    const name = e.kind === "exec" ? e.filename : (e.process.exe || e.process.comm);
    if (!p.names.includes(name)) { p.names.push(name); }
    if (e.kind === "fork") { get(e.child_pid).ppid = e.process.pid; }
    if (e.kind === "exit") { p.exit = describe(e); }
    if (VIOLATIONS.includes(e.kind)) { p.violations += e.count || 1; }
  }
  if (procs.size === 0) { return el("p", { class: "empty" }, "No process events."); }
  const children = (pid) => [...procs.values()].filter((p) => p.ppid === pid && p.pid !== pid);
  const item = (p) => el("li", { "data-pid": String(p.pid) },
    el("span", { class: "mono" }, String(p.pid)), " ", p.names.join(" → ") || "?",
    p.violations ? el("span", { class: "error" }, ` — ${p.violations} violations`) : null,
    p.exit ? el("span", { class: "empty" }, ` (${p.exit})`) : null,
    list(children(p.pid)));
  const list = (ps) => ps.length ? el("ul", {}, ps.map(item)) : null;
  return list([...procs.values()].filter((p) => !procs.has(p.ppid) || p.ppid === p.pid));
}

async function act(host, sandbox, action, status) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = `${action} ${sandbox} on ${host}?`;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "yes") { return; }
  status.replaceChildren(`${action}: sending…`);
  try {
    let command = await api("/api/v1/commands", { method: "POST", body: JSON.stringify({ host, sandbox, action }) });
    status.replaceChildren(`${action}: `, state(command.status));
    while (command.status === "queued" || command.status === "delivered") {
      await new Promise((r) => setTimeout(r, 300));
      command = await api("/api/v1/commands/" + command.id);
      status.replaceChildren(`${action}: `, state(command.status), command.error ? " — " + command.error : "");
    }
    if (location.hash.includes("/sandbox/")) { setTimeout(route, 1500); }
  } catch (e) {
    status.replaceChildren(el("span", { class: "error" }, `${action} refused: ${e.message}`));
  }
}

// --- Routing and sign-in -------------------------------------------------------------------

async function route() {
  if (stopStream) { stopStream(); stopStream = null; }
  const view = document.getElementById("view");
  if (!token()) { return signOut(); }
  document.getElementById("sign-in").hidden = true;
  try {
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    if (parts[0] === "host" && parts[2] === "sandbox") { await sandboxView(view, parts[1], parts[3], parts[4] === "severity"); }
    else if (parts[0] === "host") { await hostView(view, parts[1]); }
    else { await hostsView(view); }
  } catch (e) {
    view.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

function signOut(message) {
  sessionStorage.removeItem("cordon-token");
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
    const me = await api("/api/v1/whoami");
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
    document.getElementById("sign-out").hidden = false;
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
