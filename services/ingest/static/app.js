// The dashboard: polls /ui/api/overview, follows /ui/api/stream (SSE) for live progress.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token") || localStorage.getItem("wan22-token") || "";
if (token) localStorage.setItem("wan22-token", token);
const auth = token ? { Authorization: `Bearer ${token}` } : {};
const withToken = (url) => (token && url.startsWith("/") ? `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` : url);
const $ = (selector) => document.querySelector(selector);
const progress = {};  // task id -> {percent, step, total, expert}
window.wan22Progress = progress;  // for end-to-end tests and the curious

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function renderGroups(groups) {
  const rows = [];
  for (const stream of groups.streams) {
    const list = stream.groups.length ? stream.groups : [null];
    for (const group of list) {
      const consumers = group ? group.consumers.map((c) => `${c.name} (${c.pending}, idle ${Math.round(c.idle_ms / 1000)}s)`).join(", ") : "";
      rows.push(el("tr", {},
        el("td", { text: stream.stream }), el("td", { text: stream.length }),
        el("td", { text: group ? group.group : "" }), el("td", { text: group ? (group.lag ?? "NULL") : "" }),
        el("td", { text: group ? group.pending : "" }),
        el("td", { text: group && group.pending ? `${Math.round(group.oldest_pending_ms / 1000)}s` : "" }),
        el("td", { text: consumers })));
    }
  }
  $("#groups tbody").replaceChildren(...rows);
  $("#flags").replaceChildren(...groups.flags.map((flag) => el("li", { class: "flag", text: flag })));
}

function bar(taskId, percent) {
  return el("div", { class: "bar" }, el("div", { class: "fill", id: `fill-${taskId}`, style: `width:${percent}%` }));
}

function renderTasks(tasks) {
  const running = tasks.filter((t) => ["queued", "running", "retrying"].includes(t.status));
  $("#running").replaceChildren(...running.map((t) => {
    const live = progress[t.task_id] || { percent: t.progress || 0, step: t.step, total: t.total };
    return el("div", { class: "task", id: `task-${t.task_id}`, "data-status": t.status },
      el("code", { text: t.task_id }), bar(t.task_id, live.percent),
      el("span", { id: `label-${t.task_id}`, text: `${t.status} ${live.step || 0}/${live.total || "?"}` }));
  }));
  const done = tasks.filter((t) => ["completed", "failed", "cancelled", "rejected"].includes(t.status));
  $("#results").replaceChildren(...done.slice(0, 24).map((t) => {
    const media = t.status === "completed" && t.video
      ? el("video", { src: withToken(t.video), poster: withToken(t.poster), controls: "", muted: "", preload: "metadata", "data-task": t.task_id })
      : el("p", { class: "error", text: t.error || t.status });
    return el("div", { class: `card ${t.status}`, id: `result-${t.task_id}` }, el("code", { text: t.task_id }),
      el("div", { text: `${t.task} · ${t.status}` }), media);
  }));
}

function renderDeadLetters(letters) {
  $("#dlq tbody").replaceChildren(...letters.map((d) => {
    const button = el("button", { text: "replay" });
    button.onclick = async () => { await api(`/ui/api/dlq/${d.id}/replay`, { method: "POST" }); refresh(); };
    return el("tr", {}, el("td", { text: d.id }), el("td", { text: d.stream }), el("td", { text: d.task_id }),
      el("td", { text: d.reason }), el("td", { text: d.attempts }), el("td", { class: "error", text: d.error }), el("td", {}, button));
  }));
}

async function refresh() {
  try {
    const data = await api("/ui/api/overview");
    const select = $("#task");
    if (!select.options.length) select.replaceChildren(...data.task_types.map((t) => el("option", { value: t, text: t })));
    renderGroups(data.groups);
    renderTasks(data.tasks);
    renderDeadLetters(data.dead_letters);
  } catch (error) {
    $("#live").textContent = `error: ${error.message}`;
  }
}

function follow() {
  const source = new EventSource(withToken("/ui/api/stream"));
  source.onopen = () => { $("#live").textContent = "live"; $("#live").classList.add("on"); };
  source.onerror = () => { $("#live").textContent = "reconnecting…"; $("#live").classList.remove("on"); };
  source.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    progress[p.task_id] = p;
    const fill = document.getElementById(`fill-${p.task_id}`);
    if (fill) fill.style.width = `${p.percent}%`;
    const label = document.getElementById(`label-${p.task_id}`);
    if (label) label.textContent = `running ${p.step}/${p.total} ${p.expert}`;
  });
  for (const kind of ["accepted", "started", "retrying", "completed", "failed", "cancelled", "rejected"]) {
    source.addEventListener(kind, () => refresh());
  }
}

$("#submit").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const body = await api("/generate", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task: $("#task").value, prompt: $("#prompt").value }) });
    $("#submit-result").textContent = body.task_id;
    refresh();
  } catch (error) {
    $("#submit-result").textContent = error.message;
  }
});

refresh();
follow();
setInterval(refresh, 3000);
