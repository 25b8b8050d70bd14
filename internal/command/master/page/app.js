// The status page: it renders each view the master pushes on /api/events
// (server-sent events). It polls nothing and sends nothing but that one GET.
"use strict";

const $ = (id) => document.getElementById(id);
const seen = new Set(); // versions already shown in the timeline

// Class names come from a fixed list: a value the master relays from a child
// (state, outcome, cause) becomes a class only if the style sheet knows it.
const classes = {
  role: ["master", "agent", "worker"],
  state: ["ready", "starting", "stopping", "backoff", "missing", "degraded"],
  by: ["push", "pull", "force", "start"],
  outcome: ["ok", "error", "running", "timeout", "canceled"],
  health: ["ok", "degraded", "starting", "unknown"],
};
const known = (kind, value) => (classes[kind].includes(value) ? value : "");

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function cell(tr, text, cls) {
  const td = el("td", cls, text);
  tr.appendChild(td);
  return td;
}

function dur(ms) {
  if (ms === undefined || ms === null || isNaN(ms) || ms < 0) return "-";
  if (ms < 1000) return Math.round(ms) + " ms";
  let s = Math.floor(ms / 1000);
  if (s < 60) return (ms / 1000).toFixed(s < 10 ? 1 : 0) + " s";
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  s %= 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m + "m " + String(s).padStart(2, "0") + "s";
}

function bytes(n) {
  if (!n) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i > 1 ? 1 : 0) + " " + units[i];
}

const isSet = (t) => t && !t.startsWith("0001-");
const since = (now, t) => (isSet(t) ? now - Date.parse(t) : NaN);

function clock(t) {
  if (!isSet(t)) return "-";
  const d = new Date(t);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function byTag(by) {
  return el("span", "by " + known("by", by), by || "-");
}

function renderProcs(v, now) {
  const body = $("procs").tBodies[0];
  body.replaceChildren();
  for (const p of [v.master, ...(v.children || [])]) {
    const tr = el("tr", known("role", p.role));
    tr.dataset.role = p.role;
    tr.dataset.state = p.state;
    if (p.role === "worker") tr.dataset.slot = p.slot;
    cell(tr, p.role, "role");
    cell(tr, p.role === "worker" ? String(p.slot) : "", "num");
    cell(tr, p.id || "-", "mono");
    cell(tr, "").appendChild(el("span", "state " + known("state", p.state), p.state));
    cell(tr, p.state === "missing" ? "-" : dur(since(now, p.started)), "num");
    cell(tr, String(p.restarts || 0), "num restarts" + (p.restarts > 0 ? " restarted" : ""));
    cell(tr, bytes(p.rss), "num rss");
    cell(tr, p.beat ? (p.cpuPercent || 0).toFixed(1) + " %" : "-", "num cpu");
    const c = p.cache;
    cell(tr, c ? c.version : "-", "mono version");
    cell(tr, c ? dur(since(now, c.updatedAt)) : "-", "num");
    cell(tr, "").appendChild(c ? byTag(c.by) : el("span", "", "-"));
    body.appendChild(tr);
  }
}

// The bars of a change: the time to each worker, on a log scale shared by
// every change shown (top, in ms), so that 2 ms and 2 s both read.
const logScale = (ms, top) => (100 * Math.log10(1 + Math.max(0, ms))) / Math.log10(1 + top);

function bars(change, top) {
  const box = el("div", "bars");
  const arr = [...(change.arrivals || [])].sort((a, b) => a.slot - b.slot || a.ms - b.ms);
  for (const a of arr) {
    box.appendChild(el("span", "who", a.slot >= 0 ? "w" + a.slot : a.id));
    const track = el("div", "track");
    const fill = el("div", "fill" + (a.stale ? " stale" : ""));
    fill.style.width = Math.max(1, logScale(a.ms, top)) + "%";
    track.appendChild(fill);
    box.appendChild(track);
    box.appendChild(el("span", "ms", dur(a.ms)));
  }
  return box;
}

function renderTimeline(v) {
  const body = $("timeline").tBodies[0];
  const changes = [...(v.timeline || [])].reverse().slice(0, 8);
  const top = Math.max(10, ...changes.flatMap((c) => (c.arrivals || []).map((a) => a.ms)));
  body.replaceChildren();
  for (const c of changes) {
    const tr = el("tr", c.complete ? "" : "pending");
    tr.dataset.version = c.version;
    if (!seen.has(c.version)) {
      if (seen.size > 0) tr.classList.add("fresh");
      seen.add(c.version);
    }
    cell(tr, c.version, "mono version");
    cell(tr, "").appendChild(byTag(c.by));
    cell(tr, clock(c.at), "mono");
    cell(tr, "").appendChild(bars(c, top));
    cell(tr, c.complete ? dur(c.tookMs) : "…", "num took");
    cell(tr, c.fetches ? String(c.fetches) : "-", "num fetches");
    body.appendChild(tr);
  }
  $("timeline-empty").hidden = changes.length > 0;
}

function renderSchedules(v, now) {
  const body = $("schedules").tBodies[0];
  const list = v.schedules || [];
  body.replaceChildren();
  for (const s of list) {
    const tr = el("tr");
    tr.dataset.schedule = s.name;
    const name = cell(tr, s.name, "mono name");
    name.appendChild(el("small", "", "every " + s.every + ", " + (s.type === "worker" ? "one worker" : s.type)));
    cell(tr, isSet(s.last) ? dur(since(now, s.last)) + " ago" : "-", "num");
    const out = cell(tr, s.outcome || "-", "outcome " + known("outcome", s.outcome));
    out.title = (s.worker ? "run " + s.runSeq + " in worker " + s.worker : "") + (s.err ? ": " + s.err : "");
    cell(tr, s.outcome && s.outcome !== "running" ? dur(s.durationMs) : "-", "num");
    cell(tr, isSet(s.next) ? "in " + dur(-since(now, s.next)) : "-", "num");
    body.appendChild(tr);
  }
  $("schedules-empty").hidden = list.length > 0;
}

function renderRates(v) {
  const body = $("rates").tBodies[0];
  const rates = Object.entries(v.rates || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const top = Math.max(1e-9, ...rates.map(([, n]) => n));
  body.replaceChildren();
  for (const [verb, n] of rates) {
    const tr = el("tr");
    tr.dataset.verb = verb;
    cell(tr, verb, "mono");
    cell(tr, n < 10 ? n.toFixed(2) : n.toFixed(0), "num");
    const bar = el("div", "rate");
    bar.style.width = Math.max(1, (100 * n) / top) + "%";
    cell(tr, "", "ratebar").appendChild(bar);
    body.appendChild(tr);
  }
  $("rates-empty").hidden = rates.length > 0;
}

function render(v) {
  const now = Date.parse(v.now);
  const h = $("health");
  h.textContent = v.health;
  h.className = "health " + known("health", v.health.split(":")[0]);
  $("mode").textContent = v.mode + (v.reloading ? " (reloading)" : "");
  $("master").textContent = "pid " + v.master.pid + ", up " + dur(since(now, v.master.started));
  $("bus").textContent = v.bus;
  $("now").textContent = clock(v.now);
  renderProcs(v, now);
  renderTimeline(v);
  renderSchedules(v, now);
  renderRates(v);
  document.body.dataset.views = String(Number(document.body.dataset.views || 0) + 1);
}

const live = $("live");
const events = new EventSource("api/events");
events.addEventListener("status", (e) => render(JSON.parse(e.data)));
events.onopen = () => { live.textContent = "live"; live.className = "live on"; };
events.onerror = () => { live.textContent = "offline, reconnecting"; live.className = "live off"; };
