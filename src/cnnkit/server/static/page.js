// The page at `/`: draw a digit or upload an image, POST it to /v1/predict, show the top classes.
// Plain script, no build step and nothing fetched from elsewhere: the server ships this file as is.
"use strict";

const TOP_K = 5;
const PEN = 22;        // px on the 280 px pad: after scaling to 20 px it is a ~2 px MNIST-like stroke
const BOX = 20 / 28;   // MNIST: the digit's longer side fills 20 of the 28 px, the rest is margin
const MAX_NAMES = 12;  // class names listed in the header before "and N more"

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const padCtx = pad.getContext("2d", { willReadFrequently: true });  // read back on every stroke
const sample = $("sample");
const sampleCtx = sample.getContext("2d");
const predictButton = $("predict");

let model = null;      // this server's entry in GET /v1/models
let last = null;       // the pen's previous point while a stroke is drawn
let photoUrl = null;

// -- drawing ---------------------------------------------------------------------------------

function clearPad() {
  padCtx.fillStyle = "#000";
  padCtx.fillRect(0, 0, pad.width, pad.height);
  sampleCtx.fillStyle = "#000";
  sampleCtx.fillRect(0, 0, sample.width, sample.height);
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();  // the canvas may be shown smaller than 280 px
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

function stroke(from, to) {
  padCtx.strokeStyle = "#fff";
  padCtx.lineWidth = PEN;
  padCtx.lineCap = "round";
  padCtx.lineJoin = "round";
  padCtx.beginPath();
  padCtx.moveTo(from[0], from[1]);
  padCtx.lineTo(to[0], to[1]);
  padCtx.stroke();
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  last = padPoint(event);
  padCtx.fillStyle = "#fff";  // a tap leaves a dot
  padCtx.beginPath();
  padCtx.arc(last[0], last[1], PEN / 2, 0, 2 * Math.PI);
  padCtx.fill();
});

pad.addEventListener("pointermove", (event) => {
  if (!last) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) {
    const point = padPoint(e);
    stroke(last, point);
    last = point;
  }
});

function endStroke() {
  if (!last) return;
  last = null;
  const image = toModelInput();
  if (image) showSample(image);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
pad.addEventListener("lostpointercapture", endStroke);

// -- the drawing as MNIST makes its digits ---------------------------------------------------
// Crop to the ink, scale the longer side to 20/28 of the input (area-averaged, so grey edges),
// then paste into a black H x W image with the centre of mass in the middle.

function areaWeights(from, to) {
  // For each of `to` output cells: the source cells it covers and their share of it.
  const ratio = from / to;
  const cells = [];
  for (let i = 0; i < to; i++) {
    const a = i * ratio, b = (i + 1) * ratio, taps = [];
    for (let j = Math.floor(a); j < Math.min(from, Math.ceil(b)); j++) {
      const overlap = Math.min(b, j + 1) - Math.max(a, j);
      if (overlap > 0) taps.push([j, overlap / ratio]);
    }
    cells.push(taps);
  }
  return cells;
}

function resample(src, w, h, outW, outH) {
  const wx = areaWeights(w, outW), wy = areaWeights(h, outH);
  const rows = new Float32Array(outW * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < outW; x++) {
      let sum = 0;
      for (const [j, k] of wx[x]) sum += k * src[y * w + j];
      rows[y * outW + x] = sum;
    }
  }
  const out = new Float32Array(outW * outH);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      let sum = 0;
      for (const [j, k] of wy[y]) sum += k * rows[j * outW + x];
      out[y * outW + x] = sum;
    }
  }
  return out;
}

function toModelInput() {
  const [height, width] = model ? model.input_shape : [28, 28];
  const { data } = padCtx.getImageData(0, 0, pad.width, pad.height);
  let x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
  for (let y = 0; y < pad.height; y++) {
    for (let x = 0; x < pad.width; x++) {
      if (data[4 * (y * pad.width + x)] > 0) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return null;  // no ink
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const crop = new Float32Array(bw * bh);
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) crop[y * bw + x] = data[4 * ((y0 + y) * pad.width + x0 + x)] / 255;
  }
  const scale = Math.min(BOX * width / bw, BOX * height / bh);  // keeps the aspect ratio
  const sw = Math.max(1, Math.round(bw * scale)), sh = Math.max(1, Math.round(bh * scale));
  const small = resample(crop, bw, bh, sw, sh);

  let mass = 0, mx = 0, my = 0;
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < sw; x++) {
      const v = small[y * sw + x];
      mass += v; mx += v * (x + 0.5); my += v * (y + 0.5);
    }
  }
  // Shift whole pixels (as MNIST did), clamped so no ink falls off the edge.
  const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
  const dx = clamp(Math.round(width / 2 - mx / mass), width - sw);
  const dy = clamp(Math.round(height / 2 - my / mass), height - sh);
  const pixels = new Float32Array(width * height);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < sw; x++) pixels[(y + dy) * width + x + dx] = small[y * sw + x];
  }
  return { width, height, pixels };
}

function showSample({ width, height, pixels }) {
  // The preview canvas IS the image sent: its PNG is the request body.
  const image = sampleCtx.createImageData(width, height);
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.round(Math.min(1, pixels[i]) * 255);
    image.data.set([v, v, v, 255], 4 * i);
  }
  sampleCtx.putImageData(image, 0, 0);
}

async function predictDrawing() {
  const image = toModelInput();
  if (!image) {
    showError("Nothing to predict yet: draw a digit on the black square first.");
    return;
  }
  showSample(image);
  const png = await new Promise((resolve) => sample.toBlob(resolve, "image/png"));
  // Sent as bytes, not as the Blob: DevTools (and the browser test) can then show the body.
  await send(await png.arrayBuffer(), { "Content-Type": "image/png" });
}

// -- uploads ---------------------------------------------------------------------------------

function showPhoto(file) {
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  const photo = $("photo");
  photo.hidden = false;
  photo.src = photoUrl;
  $("drop-text").innerHTML = "";
  $("drop-text").append(file.name, document.createElement("br"));
  const hint = document.createElement("span");
  hint.className = "muted";
  hint.textContent = "Choose or drop another image";
  $("drop-text").append(hint);
}

async function predictFile(file) {
  if (!file) return;
  showPhoto(file);
  const form = new FormData();
  form.append("file", file, file.name);
  await send(form, {});
}

// -- talking to the server -------------------------------------------------------------------

async function send(body, headers) {
  hideError();
  setBusy(true);
  try {
    let response;
    try {
      response = await fetch(`/v1/predict?top_k=${TOP_K}`, { method: "POST", body, headers });
    } catch (err) {
      throw new Error(`Cannot reach the server (${err.message}). Is cnnkit serve still running?`);
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const message = answer && answer.message ? answer.message : response.statusText;
      throw new Error(`Error ${response.status}: ${message}`);
    }
    showResults(answer.predictions[0]);
  } catch (err) {
    clearResults();  // an earlier answer next to this error would read as the answer to this image
    showError(err.message);
  } finally {
    setBusy(false);
  }
}

function showResults(prediction) {
  $("result-empty").hidden = true;
  const top = $("top");
  top.hidden = false;
  top.replaceChildren("Top answer: ", Object.assign(document.createElement("strong"), { textContent: prediction.label }),
                      ` (${percent(prediction.probability)})`);
  const bars = $("bars");
  bars.replaceChildren(...prediction.top_k.map(({ label, probability }, rank) => {
    const item = document.createElement("li");
    item.dataset.label = label;
    item.dataset.probability = String(probability);
    if (rank === 0) item.className = "best";
    const name = Object.assign(document.createElement("span"), { className: "label", textContent: label });
    const track = Object.assign(document.createElement("span"), { className: "track" });
    const fill = Object.assign(document.createElement("span"), { className: "fill" });
    fill.style.width = `${(100 * probability).toFixed(1)}%`;
    track.append(fill);
    const value = Object.assign(document.createElement("span"), { className: "value", textContent: percent(probability) });
    item.append(name, track, value);
    return item;
  }));
}

function clearResults() {
  $("result-empty").hidden = false;
  $("top").hidden = true;
  $("bars").replaceChildren();
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function setBusy(busy) {
  $("results").setAttribute("aria-busy", String(busy));
  predictButton.disabled = busy || !model;
}

// -- modes and start-up ----------------------------------------------------------------------

function setMode(mode) {
  for (const name of ["draw", "upload"]) {
    $(`${name}-panel`).hidden = name !== mode;
    $(`mode-${name}`).setAttribute("aria-pressed", String(name === mode));
  }
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models");
    const answer = await response.json().catch(() => null);
    if (!response.ok || !answer) {
      throw new Error(answer && answer.message ? answer.message : `GET /v1/models answered ${response.status}`);
    }
    model = answer.models[0];
  } catch (err) {
    $("model-info").textContent = "No model information.";
    showError(`Could not load the model description: ${err.message}`);
    return;
  }
  const [height, width] = model.input_shape;
  const names = model.class_names.slice(0, MAX_NAMES).join(", ")
    + (model.class_names.length > MAX_NAMES ? `, and ${model.class_names.length - MAX_NAMES} more` : "");
  $("model-info").textContent = `${model.name} (version ${model.version}) · input ${height}×${width} `
    + `${model.color_mode} · ${model.class_names.length} classes: ${names}`;
  sample.width = width;
  sample.height = height;
  $("sample-caption").textContent = `What the network sees: ${height}×${width} px`;
  $("upload-note").textContent = `The server converts it to ${model.color_mode} and resizes it to `
    + `${height}×${width} (${model.resize}).`;
  clearPad();
  if (model.color_mode !== "grayscale") setMode("upload");  // a photo model: drawing is rarely what you want
  setBusy(false);
}

$("mode-draw").addEventListener("click", () => setMode("draw"));
$("mode-upload").addEventListener("click", () => setMode("upload"));
$("clear").addEventListener("click", () => { clearPad(); hideError(); });
predictButton.addEventListener("click", predictDrawing);
$("file").addEventListener("change", (event) => {
  predictFile(event.target.files[0]);
  event.target.value = "";  // choosing the same file again predicts again
});
$("photo").addEventListener("error", () => { $("photo").hidden = true; });  // the server may still decode it

const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  predictFile(event.dataTransfer.files[0]);
});
// A file dropped next to the zone would make the browser leave the page to show it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

predictButton.disabled = true;
clearPad();
loadModel();
