// Shared by the dashboard's scripts: the API token, fetch with JSON errors, DOM helpers, the
// confirmation dialog. Plain scripts loaded in order; no build step.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token") || localStorage.getItem("wan22-token") || "";
if (token) localStorage.setItem("wan22-token", token);
if (location.hash.startsWith("#token=")) history.replaceState(null, "", location.pathname);
const auth = token ? { Authorization: `Bearer ${token}` } : {};
const withToken = (url) => (token && url.startsWith("/") ? `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` : url);
const $ = (selector) => document.querySelector(selector);
// The latest preview of a running task (tasks with previews on); `step` only defeats caches.
const previewUrl = (taskId, step) => withToken(`/v1/videos/${encodeURIComponent(taskId)}/content?variant=thumbnail&step=${step}`);
const TERMINAL = ["completed", "failed", "cancelled", "rejected"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// replaceChildren() would print a null as "null": leave absent parts out.
const present = (...nodes) => nodes.filter((n) => n !== null && n !== undefined);

// The API's errors name the field and the reason: keep both for the form to point at.
class ApiFailure extends Error {
  constructor(body, status) {
    super(body.error || `HTTP ${status}`);
    this.field = body.field;
    this.reason = body.reason;
    this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  let body = {};
  try { body = await response.json(); } catch { body = { error: response.statusText }; }
  if (!response.ok) throw new ApiFailure(body, response.status);
  return body;
}

const postJson = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

function when(ts) {
  if (!ts) return "";
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? `${value.toFixed(2)} s` : `${value.toFixed(1)} s`;
}

function taskLink(taskId) {
  return el("a", { href: `#task/${taskId}`, class: "task-link", text: taskId });
}

function statusBadge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

// A modal <dialog> instead of window.confirm: styled, and scriptable by end-to-end tests.
function confirmAction(message, confirmLabel = "Confirm") {
  const dialog = $("#confirm");
  $("#confirm-message").textContent = message;
  $("#confirm-ok").textContent = confirmLabel;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function notify(message, bad = false) {
  const box = $("#notice");
  box.textContent = message;
  box.className = bad ? "notice bad" : "notice";
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.className = "notice hidden"; }, 6000);
}

// Runs an action after the operator confirmed it; says what happened either way.
async function confirmed(message, label, action, done) {
  if (!(await confirmAction(message, label))) return;
  try {
    notify(await action());
  } catch (error) {
    notify(`${label} failed: ${error.message}`, true);
  }
  if (done) done();
}
