// The overview and the page's routing: polls /ui/api/overview, follows /ui/api/stream (SSE) for
// live progress, lists and filters tasks, and acts on dead letters.
"use strict";

const progress = {};  // task id -> {percent, step, total, expert}
window.wan22Progress = progress;  // for end-to-end tests and the curious
const previews = {};  // task id -> the step of its latest preview (kept when a later step has none)
window.wan22Previews = previews;

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

function renderRunning(tasks) {
  const running = tasks.filter((t) => ["queued", "running", "retrying"].includes(t.status));
  $("#running").replaceChildren(...running.map((t) => {
    const live = progress[t.task_id] || { percent: t.progress || 0, step: t.step, total: t.total };
    const preview = live.preview_step
      ? el("img", { class: "preview", id: `preview-${t.task_id}`, src: previewUrl(t.task_id, live.preview_step), alt: "preview" })
      : el("img", { class: "preview", id: `preview-${t.task_id}`, alt: "preview", hidden: "" });
    return el("div", { class: "task", id: `task-${t.task_id}`, "data-status": t.status },
      taskLink(t.task_id), bar(t.task_id, live.percent),
      el("span", { id: `label-${t.task_id}`, text: `${t.status} ${live.step || 0}/${live.total || "?"}` }), preview);
  }));
}

function renderResults(tasks) {
  const done = tasks.filter((t) => TERMINAL.includes(t.status));
  $("#results").replaceChildren(...done.slice(0, 24).map((t) => {
    const media = t.status === "completed" && t.video
      ? el("video", { src: withToken(t.video), poster: t.poster ? withToken(t.poster) : undefined, controls: "", muted: "", preload: "metadata", "data-task": t.task_id })
      : el("p", { class: "error", text: t.error || t.status });
    return el("div", { class: `card ${t.status}`, id: `result-${t.task_id}` }, taskLink(t.task_id),
      el("div", { text: `${t.task} · ${t.status}` }), media);
  }));
}

// The task list: recent tasks, or those whose id starts with the search text, of one state.
async function refreshTaskList() {
  const params = new URLSearchParams({ limit: "100" });
  if ($("#search").value.trim()) params.set("q", $("#search").value.trim());
  if ($("#state").value) params.set("status", $("#state").value);
  try {
    const { tasks, matched } = await api(`/ui/api/tasks?${params}`);
    $("#task-list tbody").replaceChildren(...tasks.map((t) => el("tr", { "data-task": t.task_id },
      el("td", {}, taskLink(t.task_id)), el("td", { text: t.task }), el("td", {}, statusBadge(t.status)),
      el("td", { text: `${Math.round(t.progress || 0)}%` }), el("td", { text: when(t.created_at) }),
      el("td", { text: when(t.updated_at) }), el("td", { class: "error", text: t.error || "" }))));
    $("#task-count").textContent = `${matched} matching`;
    $("#search").classList.remove("invalid");
  } catch (error) {
    if (error.field === "q") $("#search").classList.add("invalid");
    $("#task-count").textContent = error.message;
  }
}

function deadLetterRow(d, kind) {
  const base = kind === "jobs" ? "/ui/api/dlq" : "/ui/api/webhooks/dlq";
  const replay = d.reason === "undecodable" ? null : el("button", { class: "replay", "data-dlq": d.id, text: "replay",
    onclick: () => confirmed(`Replay dead letter ${d.id}${d.task_id ? ` of task ${d.task_id}` : ""}? It goes back onto ${d.stream} with a fresh attempt budget.`,
      "Replay", async () => { await api(`${base}/${d.id}/replay`, { method: "POST" }); return `replayed ${d.id}`; }, refresh) });
  const purge = el("button", { class: "purge danger", "data-dlq": d.id, text: "purge",
    onclick: () => confirmed(`Delete dead letter ${d.id} for good?`, "Purge",
      async () => `purged ${(await postJson(`${base}/purge`, { ids: [d.id] })).purged}`, refresh) });
  return el("tr", { "data-dlq": d.id }, el("td", { text: d.id }), el("td", { text: d.stream }),
    el("td", {}, d.task_id ? taskLink(d.task_id) : ""), el("td", { text: d.reason }), el("td", { text: d.attempts }),
    el("td", { class: "error", text: d.error }), el("td", {}, replay, purge));
}

function renderDeadLetters(letters, hooks) {
  $("#dlq tbody").replaceChildren(...letters.map((d) => deadLetterRow(d, "jobs")));
  $("#webhook-dlq tbody").replaceChildren(...hooks.map((d) => deadLetterRow(d, "webhooks")));
}

function purgeAll(kind) {
  const base = kind === "jobs" ? "/ui/api/dlq" : "/ui/api/webhooks/dlq";
  return confirmed(`Delete every ${kind} dead letter for good?`, "Purge all",
    async () => `purged ${(await postJson(`${base}/purge`, { all: true })).purged}`, refresh);
}

async function refresh() {
  try {
    const data = await api("/ui/api/overview");
    fillTasks(data.task_specs);
    renderGroups(data.groups);
    renderRunning(data.tasks);
    renderResults(data.tasks);
    renderDeadLetters(data.dead_letters, data.webhook_dead_letters);
  } catch (error) {
    $("#live").textContent = `error: ${error.message}`;
  }
  refreshTaskList();
}

function follow() {
  const source = new EventSource(withToken("/ui/api/stream"));
  source.onopen = () => { $("#live").textContent = "live"; $("#live").classList.add("on"); };
  source.onerror = () => { $("#live").textContent = "reconnecting…"; $("#live").classList.remove("on"); };
  source.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    progress[p.task_id] = { ...p, preview_step: p.preview_step || previews[p.task_id] || 0 };
    const fill = document.getElementById(`fill-${p.task_id}`);
    if (fill) fill.style.width = `${p.percent}%`;
    const label = document.getElementById(`label-${p.task_id}`);
    if (label) label.textContent = `running ${p.step}/${p.total} ${p.expert}`;
    if (p.preview_step) {
      previews[p.task_id] = p.preview_step;
      for (const img of [document.getElementById(`preview-${p.task_id}`), document.getElementById("task-preview")]) {
        if (img && img.dataset.task !== undefined && img.dataset.task !== p.task_id) continue;
        if (img) { img.src = previewUrl(p.task_id, p.preview_step); img.hidden = false; }
      }
    }
    onTaskEntry(p.task_id);
  });
  for (const kind of ["accepted", "started", "retrying", "completed", "failed", "cancelled", "rejected"]) {
    source.addEventListener(kind, (event) => {
      refresh();
      try { onTaskEntry(JSON.parse(event.data).task_id); } catch { /* not ours to judge */ }
    });
  }
}

// #task/<id> shows one task; anything else the overview.
function route() {
  const match = location.hash.match(/^#task\/(.+)$/);
  $("#overview-view").hidden = Boolean(match);
  $("#task-view").hidden = !match;
  if (match) {
    showTask(decodeURIComponent(match[1]));
  } else {
    openTask = null;
  }
  window.scrollTo(0, 0);
}

$("#find").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("#search").value.trim();
  if (location.hash.startsWith("#task/")) location.hash = "";
  refreshTaskList().then(() => {
    const rows = document.querySelectorAll("#task-list tbody tr");
    if (q && rows.length === 1) location.hash = `#task/${rows[0].dataset.task}`;
  });
});
$("#state").addEventListener("change", refreshTaskList);
$("#purge-jobs").addEventListener("click", () => purgeAll("jobs"));
$("#purge-webhooks").addEventListener("click", () => purgeAll("webhooks"));
window.addEventListener("hashchange", route);

route();
refresh();
refreshCharts();
follow();
setInterval(refresh, 3000);
setInterval(refreshCharts, 15000);
setInterval(() => { if (openTask && !TERMINAL.includes(openTask.status)) showTask(openTask.id); }, 2000);
