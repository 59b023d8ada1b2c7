// The submit form: offers each served task's sizes and limits, sends an uploaded image as a
// data: URL in the JSON body of POST /generate, and points at the field the API names on error.
"use strict";

const specs = {};  // task name -> its spec from /ui/api/overview
let imageDataUrl = "";  // the chosen image as data:image/...;base64,...

function fillTasks(taskSpecs) {
  const select = $("#task");
  if (select.options.length) return;
  for (const spec of taskSpecs) specs[spec.name] = spec;
  select.replaceChildren(...taskSpecs.map((s) => el("option", { value: s.name, text: `${s.name} (${s.kind})` })));
  select.addEventListener("change", applySpec);
  applySpec();
}

// Defaults and limits of the chosen task; the image input only where the task takes one.
function applySpec() {
  const spec = specs[$("#task").value];
  if (!spec) return;
  $("#size").replaceChildren(...spec.sizes.map((s) => el("option", { value: s, text: s.replace("*", "×") })));
  Object.assign($("#frame_num"), { placeholder: spec.frame_num, max: spec.max_frames });
  Object.assign($("#sample_steps"), { placeholder: spec.sample_steps, max: spec.max_steps });
  $("#guide_scale").placeholder = spec.guide_scale[0] === spec.guide_scale[1] ? `${spec.guide_scale[0]}` : spec.guide_scale.join(",");
  $("#image-row").hidden = !spec.accepts_image;
  $("#image").required = spec.needs_image;
  $("#image-label").textContent = spec.needs_image ? "image (required)" : "image (optional)";
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function loadImage() {
  const file = $("#image").files[0];
  imageDataUrl = "";
  $("#image-preview").replaceChildren();
  if (!file) return;
  if (!file.type.startsWith("image/")) { markField("image", "not an image file"); return; }
  imageDataUrl = await readImage(file);
  const about = `${file.name}, ${Math.max(1, Math.round(file.size / 1024))} KiB`;
  $("#image-preview").replaceChildren(el("img", { src: imageDataUrl, alt: file.name }), el("span", { text: about }));
}

// Reading the file is asynchronous: a submit right after choosing it waits for the read.
let imageLoaded = Promise.resolve();
const onImage = () => { imageLoaded = loadImage(); };

const numberOrEmpty = (id) => ($(`#${id}`).value.trim() === "" ? undefined : Number($(`#${id}`).value));

function guideScale() {
  const raw = $("#guide_scale").value.trim();
  if (!raw) return undefined;
  const parts = raw.split(",").map((p) => Number(p.trim()));
  return parts.length === 1 ? parts[0] : parts;
}

function requestBody() {
  const spec = specs[$("#task").value];
  const body = {
    task: $("#task").value,
    prompt: $("#prompt").value,
    size: $("#size").value,
    frame_num: numberOrEmpty("frame_num"),
    sample_steps: numberOrEmpty("sample_steps"),
    seed: numberOrEmpty("seed"),
    guide_scale: guideScale(),
    negative_prompt: $("#negative_prompt").value.trim() || undefined,
    priority: $("#priority").value,
  };
  if (spec && spec.accepts_image && imageDataUrl) body.image = imageDataUrl;
  return body;  // undefined fields are left out by JSON.stringify
}

function markField(field, message) {
  document.querySelectorAll("#submit .invalid").forEach((node) => node.classList.remove("invalid"));
  const input = field && document.getElementById(field);
  if (input) input.classList.add("invalid");
  $("#submit-result").replaceChildren(el("span", { class: "error", text: field ? `${field}: ${message}` : message }));
}

async function onSubmit(event) {
  event.preventDefault();
  try {
    await imageLoaded;
    const body = await postJson("/generate", requestBody());
    document.querySelectorAll("#submit .invalid").forEach((node) => node.classList.remove("invalid"));
    $("#submit-result").replaceChildren(taskLink(body.task_id));
    refresh();
  } catch (error) {
    markField(error.field, error.message);
  }
}

$("#image").addEventListener("change", onImage);
$("#submit").addEventListener("submit", onSubmit);
