// The page of `python -m amobilenet_jax.serve`: camera frames or an upload go to /v1/predict, one
// request in flight at a time (the next frame when the answer comes); the answer's records are
// drawn as boxes over the video, as bars a face, and as a timeline a track. The server tracks and
// smooths a stream's faces with predict's own tracker and picks the mood player's tracks, so this
// page only draws. No framework, no build step; nothing but this server is contacted.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const MAX_WIDTH = 1280;  // frames wider than this are shrunk before they are sent
const TIMELINE_S = 30;   // seconds a timeline shows
const MAX_TIMELINES = 8; // the most recently seen tracks are drawn

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// What the page shows now; `window.expressionPage` lets a script (or a test) read it.
const state = {
  classNames: [],
  source: null,       // "camera", "video" or "photo"
  session: 0,         // a new source starts a new session (and stream)
  stream: null,
  startedAt: 0,
  frames: 0,          // answers shown in this session
  last: null,         // {blob, width, height, records}: the frame whose answer is shown
  photo: null,        // an uploaded photo's ImageBitmap
  chosen: null,       // the face whose attention maps are shown (index in last.records)
  tracks: new Map(),  // track id -> {times: [], probabilities: [[...]], seen}
  mood: null,         // the last mood record
  hasPlaylist: false,
};
window.expressionPage = state;

function token() { return sessionStorage.getItem("amobilenet-token") || ""; }

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    if (response.status === 401) {
      $("token-form").hidden = false;
      message = "this server needs its token: enter it above";
    }
    throw new HttpError(response.status, `${response.status}: ${message}`);
  }
  return response;
}

// --- the model and the playlist ------------------------------------------------------------------

async function describe() {
  try {
    const info = await (await call("/v1/model")).json();
    state.classNames = info.class_names;
    const valid = info.valid ? `; FERPlus Valid accuracy ${(100 * info.valid.accuracy).toFixed(2)}%` : "";
    $("model").textContent = `Model: ${info.class_names.length} classes, ${info.views} test-time views a face${valid}.`;
    const legend = $("legend");
    legend.replaceChildren(...info.class_names.map((name, i) => {
      const item = el("span", null, name);
      item.style.setProperty("--color", COLORS[i % COLORS.length]);
      return item;
    }));
    status("Ready: start the camera or choose a photo or video.");
  } catch (e) {
    status(`Could not describe the model (${e.message}).`, true);
    return;
  }
  try {
    const playlist = await (await call("/v1/playlist")).json();
    state.hasPlaylist = true;
    $("mood-section").hidden = false;
    const count = Object.values(playlist.tracks).reduce((n, t) => n + t.length, 0);
    $("mood").textContent = `${count} tracks; the expression over the last ${playlist.window_s} s picks the next.`;
  } catch (e) {
    if (!(e instanceof HttpError && e.status === 404)) status(`The playlist: ${e.message}`, true);
  }
}

// --- sources: camera, video, photo ---------------------------------------------------------------

function newSession(source) {
  state.session += 1;
  state.source = source;
  state.stream = `page-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  state.startedAt = performance.now();
  state.frames = 0;
  state.last = null;
  state.chosen = null;
  state.tracks.clear();
  state.mood = null;
  $("faces").replaceChildren();
  $("timelines").replaceChildren();
  $("attention-section").hidden = true;
  $("stage").classList.toggle("still", source === "photo");
  return state.session;
}

function stopVideo() {
  const video = $("video");
  if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  if (video.src) { URL.revokeObjectURL(video.src); video.removeAttribute("src"); video.load(); }
  $("camera").textContent = "Start camera";
}

async function startCamera() {
  if (state.source === "camera") { newSession(null); stopVideo(); status("Camera stopped."); return; }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status("No camera here: a browser gives one to pages on https or localhost only. Uploads work.", true);
    return;
  }
  stopVideo();
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    const session = newSession("camera");
    const video = $("video");
    video.srcObject = media;
    await video.play();
    $("camera").textContent = "Stop camera";
    status("Camera on.");
    frameLoop(session);
  } catch (e) {
    status(`The camera: ${e.message}`, true);
  }
}

async function upload(file) {
  if (!file) return;
  stopVideo();
  if (file.type.startsWith("video/")) {
    const session = newSession("video");
    const video = $("video");
    video.src = URL.createObjectURL(file);
    try { await video.play(); } catch (e) { status(`The video: ${e.message}`, true); return; }
    status(`Playing ${file.name}.`);
    frameLoop(session);
    return;
  }
  const session = newSession("photo");
  try {
    state.photo = await createImageBitmap(file);
  } catch (e) {
    status(`${file.name}: not an image this browser reads.`, true);
    return;
  }
  const canvas = $("overlay");
  canvas.width = state.photo.width;
  canvas.height = state.photo.height;
  redraw();
  status(`Sending ${file.name}...`);
  try {
    const response = await call("/v1/predict", { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
    if (session !== state.session) return;
    show(await response.json(), { blob: file, width: state.photo.width, height: state.photo.height });
    status(`${file.name}: ${countFaces()}.`);
  } catch (e) {
    status(e.message, true);
  }
}

function countFaces() {
  const n = state.last ? state.last.records.filter((r) => r.face !== null && r.face !== undefined).length : 0;
  return n === 1 ? "1 face" : `${n} faces`;
}

// One frame of the video element as a JPEG, at most MAX_WIDTH wide.
function grab() {
  const video = $("video");
  if (!video.videoWidth) return null;
  const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
  const canvas = grab.canvas || (grab.canvas = document.createElement("canvas"));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const time = state.source === "camera" ? (performance.now() - state.startedAt) / 1000 : video.currentTime;
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, width: canvas.width, height: canvas.height, time }), "image/jpeg", 0.92));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Sends the current frame, waits for its answer, shows it, and goes on while the session lasts.
async function frameLoop(session) {
  const video = $("video");
  while (session === state.session) {
    if (state.source === "video" && video.ended) { status("The video ended."); return; }
    const frame = await grab();
    if (!frame || !frame.blob) { await sleep(50); continue; }
    const query = new URLSearchParams({ stream: state.stream, time_s: frame.time.toFixed(3), smooth_s: $("smooth").value });
    try {
      const response = await call(`/v1/predict?${query}`, { method: "POST", body: frame.blob, headers: { "Content-Type": "image/jpeg" } });
      const records = await response.json();
      if (session !== state.session) return;
      show(records, frame);
    } catch (e) {
      if (session !== state.session) return;
      status(e.message, true);
      if (e.status === 401) { state.session += 1; return; }  // waits for the token
      await sleep(1000);
    }
  }
}

// --- drawing -------------------------------------------------------------------------------------

function show(records, frame) {
  const faces = records.filter((r) => r.face !== null && r.face !== undefined && r.box);
  state.last = { blob: frame.blob, width: frame.width, height: frame.height, records: faces };
  state.frames += 1;
  for (const r of records) if (r.mood !== undefined) playMood(r);
  for (const r of faces) if (r.track !== null && r.track !== undefined) remember(r);
  if (state.chosen !== null && state.chosen >= faces.length) state.chosen = null;
  const canvas = $("overlay");
  if (canvas.width !== frame.width || canvas.height !== frame.height) { canvas.width = frame.width; canvas.height = frame.height; }
  redraw();
  drawCards(faces);
  drawTimelines();
  if (state.source !== "photo") status(`${state.source}: ${countFaces()} (frame ${state.frames}).`);
}

function faceName(r) { return r.track !== null && r.track !== undefined ? `track ${r.track}` : `face ${r.face}`; }

function redraw() {
  const canvas = $("overlay");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (state.source === "photo" && state.photo) g.drawImage(state.photo, 0, 0);
  if (!state.last) return;
  const line = Math.max(2, canvas.width / 320);
  g.font = `${Math.round(Math.max(12, canvas.width / 40))}px system-ui, sans-serif`;
  g.textBaseline = "bottom";
  state.last.records.forEach((r, i) => {
    const [x, y, w, h] = r.box;
    const color = COLORS[state.classNames.indexOf(r.label) % COLORS.length] || "#fff";
    g.lineWidth = i === state.chosen ? 2 * line : line;
    g.strokeStyle = color;
    g.strokeRect(x, y, w, h);
    const text = `${faceName(r)}: ${r.label} ${r.score.toFixed(2)}`;
    const width = g.measureText(text).width + 8;
    const top = y > 24 ? y : y + h + parseInt(g.font, 10) + 6;
    g.fillStyle = color;
    g.fillRect(x - line / 2, top - parseInt(g.font, 10) - 6, width, parseInt(g.font, 10) + 6);
    g.fillStyle = "#fff";
    g.fillText(text, x + 4, top - 3);
  });
}

function drawCards(faces) {
  const cards = faces.map((r, i) => {
    const card = el("div", i === state.chosen ? "face chosen" : "face");
    Object.assign(card.dataset, { face: r.face, track: r.track === null ? "" : r.track, label: r.label, score: r.score });
    card.append(el("h3", null, `${faceName(r)}: ${r.label} ${r.score.toFixed(2)}`));
    Object.entries(r.probabilities).forEach(([name, p], k) => {
      const bar = el("div", "bar");
      bar.dataset.class = name;
      bar.dataset.p = p;
      const track = el("span", "track");
      const fill = el("span", "fill");
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      fill.style.background = COLORS[k % COLORS.length];
      track.append(fill);
      bar.append(el("span", "name", name), track, el("span", "value", p.toFixed(3)));
      card.append(bar);
    });
    card.addEventListener("click", () => choose(i));
    return card;
  });
  $("faces").replaceChildren(...cards);
  if (!faces.length) $("faces").append(el("p", "hint", "No face found."));
}

function remember(r) {
  let t = state.tracks.get(r.track);
  if (!t) { t = { times: [], probabilities: [], seen: 0 }; state.tracks.set(r.track, t); }
  t.times.push(r.time_s);
  t.probabilities.push(state.classNames.map((name) => r.probabilities[name]));
  t.seen = r.time_s;
  while (t.times.length && t.times[0] < r.time_s - TIMELINE_S) { t.times.shift(); t.probabilities.shift(); }
}

// One panel a track, one line a class, as `predict --timeline` draws a video's tracks.
function drawTimelines() {
  const recent = [...state.tracks.entries()].sort((a, b) => b[1].seen - a[1].seen).slice(0, MAX_TIMELINES);
  recent.sort((a, b) => a[0] - b[0]);
  const now = Math.max(...recent.map(([, t]) => t.seen), 0);
  // the last TIMELINE_S seconds, or all there is while the stream is younger (at least 2 s)
  const first = Math.min(...recent.map(([, t]) => t.times[0]), now);
  const span = Math.min(TIMELINE_S, Math.max(now - first, 2));
  const figures = recent.map(([id, t]) => {
    const figure = el("figure");
    figure.dataset.track = id;
    figure.dataset.points = t.times.length;
    const canvas = el("canvas");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = 300 * ratio;
    canvas.height = 92 * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    const x = (s) => 28 + (264 * (s - (now - span))) / span;
    const y = (p) => 84 - 76 * p;
    g.strokeStyle = "#ccc";
    g.fillStyle = "#777";
    g.font = "10px system-ui, sans-serif";
    for (const p of [0, 0.5, 1]) {
      g.beginPath(); g.moveTo(28, y(p)); g.lineTo(292, y(p)); g.stroke();
      g.fillText(p.toFixed(1), 4, y(p) + 3);
    }
    state.classNames.forEach((name, k) => {
      g.strokeStyle = COLORS[k % COLORS.length];
      g.lineWidth = 1.4;
      g.beginPath();
      t.times.forEach((s, j) => (j ? g.lineTo(x(s), y(t.probabilities[j][k])) : g.moveTo(x(s), y(t.probabilities[j][k]))));
      g.stroke();
    });
    figure.append(el("figcaption", null, `face track ${id} (the last ${span.toFixed(0)} s)`), canvas);
    return figure;
  });
  $("timelines").replaceChildren(...figures);
}

// --- attention maps and the mood player ----------------------------------------------------------

async function choose(index) {
  if (!state.last || !state.last.records[index]) return;
  state.chosen = index;
  const { blob, records } = state.last;
  const r = records[index];
  redraw();
  drawCards(records);
  $("attention-section").hidden = false;
  $("attention-title").textContent = `(${faceName(r)}: asking...)`;
  try {
    const query = new URLSearchParams({ face: r.face });
    const response = await call(`/v1/attention?${query}`, { method: "POST", body: blob, headers: { "Content-Type": blob.type || "image/jpeg" } });
    const answer = await response.json();
    $("attention-title").textContent = `(${faceName(r)}: ${answer.label} ${answer.score.toFixed(2)})`;
    const figure = (src, caption) => {
      const f = el("figure");
      const img = el("img");
      img.src = src;
      img.alt = caption;
      f.append(img, el("figcaption", null, caption));
      return f;
    };
    const figures = [figure(answer.crop, "the model's input")];
    for (const [block, src] of Object.entries(answer.maps)) figures.push(figure(src, `CBAM ${block}`));
    $("attention").replaceChildren(...figures);
    $("attention").dataset.label = answer.label;
    $("attention").dataset.face = answer.face;
  } catch (e) {
    $("attention-title").textContent = "";
    $("attention").replaceChildren(el("p", "hint", e.message));
  }
}

async function playMood(record) {
  state.mood = record;
  $("mood").dataset.mood = record.mood;
  if (!record.track) { $("mood").textContent = `Mood: ${record.mood} (${record.message || "no track"}).`; return; }
  $("mood").textContent = `Mood: ${record.mood}; loading its track...`;
  try {
    const blob = await (await call(record.track)).blob();  // fetched with the token, then played from memory
    if (state.mood !== record) return;
    const player = $("player");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(blob);
    $("mood").textContent = `Mood: ${record.mood}; playing ${record.track.split("/").slice(-2).join(" #")}.`;
    $("mood").dataset.track = record.track;
    await player.play();
  } catch (e) {
    $("mood").textContent = `Mood: ${record.mood}; the track would not play (${e.message}).`;
  }
}

// --- wiring --------------------------------------------------------------------------------------

function boxAt(event) {
  if (!state.last) return null;
  const canvas = $("overlay");
  const rect = canvas.getBoundingClientRect();
  const px = ((event.clientX - rect.left) * canvas.width) / rect.width;
  const py = ((event.clientY - rect.top) * canvas.height) / rect.height;
  const i = state.last.records.findIndex(({ box: [x, y, w, h] }) => px >= x && px <= x + w && py >= y && py <= y + h);
  return i < 0 ? null : i;
}

document.addEventListener("DOMContentLoaded", () => {
  $("camera").addEventListener("click", startCamera);
  $("upload").addEventListener("change", (e) => upload(e.target.files[0]));
  $("overlay").addEventListener("click", (e) => { const i = boxAt(e); if (i !== null) choose(i); });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("amobilenet-token", $("token").value.trim());
    $("token-form").hidden = true;
    describe();
  });
  describe();
});
