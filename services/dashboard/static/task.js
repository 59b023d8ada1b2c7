// The task page (#task/<id>): state and actions, the video and poster, parameters, attempts,
// a timeline of every lifecycle and progress entry, and webhook deliveries.
"use strict";

let openTask = null;  // {id, status} of the task on screen

function table(headers, rows, id) {
  return el("table", { id }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

function paramsTable(params) {
  if (!params) return el("p", { class: "muted", text: "the job's entry is no longer on its stream" });
  const shown = ["prompt", "negative_prompt", "image", "width", "height", "frame_num", "fps", "sample_steps",
    "sample_shift", "guide_scale", "seed", "priority", "max_attempts", "webhook_url", "metadata", "request_id"];
  const rows = shown.filter((k) => params[k] !== undefined && params[k] !== null && params[k] !== "")
    .map((k) => el("tr", {}, el("th", { text: k }), el("td", { text: typeof params[k] === "object" ? JSON.stringify(params[k]) : `${params[k]}` })));
  return el("table", { id: "task-params", class: "kv" }, el("tbody", {}, ...rows));
}

function attemptsTable(attempts) {
  if (!attempts.length) return el("p", { class: "muted", text: "not started" });
  return table(["attempt", "worker", "started", "ended", "took", "outcome", "error"], attempts.map((a) => el("tr", {},
    el("td", { text: a.attempt }), el("td", { text: a.worker }), el("td", { text: when(a.started_at) }),
    el("td", { text: when(a.ended_at) }),
    el("td", { text: a.started_at && a.ended_at ? seconds(a.ended_at - a.started_at) : "" }),
    el("td", {}, statusBadge(a.outcome || "")), el("td", { class: "error", text: a.error || "" }))), "task-attempts");
}

// Consecutive progress entries of one attempt become one row: steps first→last of total.
function timelineRows(timeline) {
  const rows = [];
  for (const e of timeline) {
    const last = rows[rows.length - 1];
    if (e.type === "progress" && last && last.type === "progress" && last.attempt === e.attempt) {
      last.to = e.step; last.until = e.at; continue;
    }
    rows.push(e.type === "progress" ? { ...e, from: e.step, to: e.step } : e);
  }
  return rows;
}

function describe(e) {
  switch (e.type) {
    case "accepted": return e.idempotent_replay ? "repeated request (idempotency key)" : `task ${e.task || ""}`;
    case "started": return `attempt ${e.attempt} on ${e.worker || "?"}`;
    case "progress": return `steps ${e.from}→${e.to} of ${e.total}${e.expert ? ` (${e.expert})` : ""}, attempt ${e.attempt}`;
    case "retrying": return `attempt ${e.attempt}/${e.max_attempts} failed, retry in ${seconds(e.delay_s)}: ${e.error}`;
    case "completed": return `${e.width || "?"}×${e.height || "?"}, ${e.frame_num || "?"} frames, ran ${seconds(e.duration_s)}`;
    case "failed": return `${e.error_type ? `${e.error_type}: ` : ""}${e.error} (${e.attempts} attempts)`;
    case "cancelled": return e.reason || "";
    case "rejected": return `${e.field ? `${e.field}: ` : ""}${e.error}`;
    default: return "";
  }
}

function timelineList(timeline, truncated) {
  const items = timelineRows(timeline).map((e) => el("li", { class: `event ${e.type}`, "data-type": e.type },
    el("time", { text: when(e.at) }), statusBadge(e.type), el("span", { text: describe(e) })));
  if (truncated) items.push(el("li", { class: "muted", text: "older or further entries were not read" }));
  return el("ol", { id: "task-timeline", class: "timeline" }, ...items);
}

function webhookRows(hooks, reload) {
  return hooks.map((h) => {
    const codes = h.attempts.map((a) => (a.status ? `${a.status}` : "no answer")).join(", ");
    const lastError = h.attempts.length ? h.attempts[h.attempts.length - 1].error : "";
    const replay = h.dlq_id ? el("button", {
      class: "replay-webhook", "data-dlq": h.dlq_id, text: "replay",
      onclick: () => confirmed(`Send the ${h.event} webhook to ${h.url} again?`, "Replay",
        async () => { await api(`/ui/api/webhooks/dlq/${h.dlq_id}/replay`, { method: "POST" }); return "webhook scheduled again"; }, reload),
    }) : null;
    return el("tr", { "data-delivery": h.delivery_id }, el("td", { text: h.event }),
      el("td", { text: h.target === "task" ? "task webhook_url" : h.target }), el("td", { class: "url", text: h.url }),
      el("td", {}, statusBadge(h.status)), el("td", { text: codes || "–" }), el("td", { class: "error", text: lastError }),
      el("td", {}, replay));
  });
}

function webhooksTable(hooks, reload) {
  if (!hooks.length) return el("p", { class: "muted", text: "no webhook deliveries recorded (none configured, or past the notifier\u2019s record retention)" });
  return table(["event", "target", "url", "status", "HTTP", "last error", ""], webhookRows(hooks, reload), "task-webhooks");
}

function mediaOf(taskId, detail) {
  if (!detail.video) return null;
  return el("div", { class: "media" },
    el("video", { id: "task-video", "data-task": taskId, src: withToken(detail.video), poster: detail.poster ? withToken(detail.poster) : undefined, controls: "", muted: "", preload: "metadata" }),
    detail.poster ? el("img", { id: "task-poster", src: withToken(detail.poster), alt: "poster" }) : null);
}

// While it runs: the latest preview, if the task has previews on (hidden until one loads).
function livePreview(taskId) {
  const step = (window.wan22Previews || {})[taskId] || 0;
  return el("img", { id: "task-preview", class: "preview", "data-task": taskId, alt: "preview", hidden: "",
    src: previewUrl(taskId, step), onload: (event) => { event.target.hidden = false; },
    onerror: (event) => { event.target.hidden = true; } });
}

function cancelButton(taskId, status) {
  if (TERMINAL.includes(status)) return null;
  return el("button", { id: "cancel-task", class: "danger", text: "Cancel task",
    onclick: () => confirmed(`Cancel task ${taskId}? A queued task ends at once, a running one at its next step.`, "Cancel task",
      async () => `task ${(await api(`/tasks/${taskId}`, { method: "DELETE" })).status}`, () => showTask(taskId)) });
}

function renderTask(taskId, detail) {
  const s = detail.state;
  const reload = () => showTask(taskId);
  $("#task-head").replaceChildren(...present(
    el("h2", {}, "Task ", el("code", { id: "task-id", text: taskId }), " ", el("span", { id: "task-status" }, statusBadge(s.status))),
    el("div", { class: "meta", text: `${s.task} · created ${when(s.created_at)} · updated ${when(s.updated_at)}${s.worker ? ` · worker ${s.worker}` : ""}` }),
    s.error ? el("p", { class: "error", text: s.error }) : null,
    TERMINAL.includes(s.status) ? null : el("div", { class: "bar" }, el("div", { class: "fill", style: `width:${s.progress || 0}%` })),
    TERMINAL.includes(s.status) ? null : livePreview(taskId),
    el("div", { class: "actions" }, cancelButton(taskId, s.status), el("a", { href: "#", text: "← overview" }))));
  $("#task-body").replaceChildren(...present(
    mediaOf(taskId, detail),
    el("h3", { text: "Parameters" }), paramsTable(detail.params),
    el("h3", { text: "Attempts" }), attemptsTable(detail.attempts),
    el("h3", { text: "Timeline" }), timelineList(detail.timeline, detail.timeline_truncated),
    el("h3", { text: "Webhook deliveries" }), webhooksTable(detail.webhooks, reload)));
}

async function showTask(taskId) {
  openTask = { id: taskId, status: "" };
  try {
    const detail = await api(`/ui/api/tasks/${encodeURIComponent(taskId)}`);
    if (!openTask || openTask.id !== taskId) return;  // the operator moved on meanwhile
    openTask.status = detail.state.status;
    renderTask(taskId, detail);
  } catch (error) {
    $("#task-head").replaceChildren(el("h2", {}, "Task ", el("code", { text: taskId })), el("p", { class: "error", text: error.message }));
    $("#task-body").replaceChildren();
  }
}

// Live entries of the open task refresh its page (at most every half second).
function onTaskEntry(taskId) {
  if (!openTask || openTask.id !== taskId || onTaskEntry.pending) return;
  onTaskEntry.pending = setTimeout(() => { onTaskEntry.pending = null; if (openTask) showTask(openTask.id); }, 500);
}
