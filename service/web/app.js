// dfstream's web UI: plain JavaScript against the /api/v1 endpoints, no build step.
// The login token lives in sessionStorage (gone with the tab); images and the live feed get it as
// ?access_token= because <img> and EventSource cannot send headers.
"use strict";

const API = "/api/v1";
const $ = (selector, root = document) => root.querySelector(selector);
const COLOURS = {fake: "#dc2626", real: "#16a34a", uncertain: "#f59e0b", pending: "#94a3b8", no_face: "#64748b", no_speech: "#64748b"};
const SERIES = ["#60a5fa", "#f472b6", "#a3e635", "#fbbf24", "#c084fc", "#2dd4bf"];
let token = sessionStorage.getItem("dfstream.token");
let cleanup = [];        // what the current view must stop when it is left (timers, feeds)
const alerts = new Map(); // firing alerts, by type and subject

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function withToken(path) { return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}`; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

async function call(path, options = {}) {
  const answer = await fetch(API + path, {...options, headers: {...(options.headers || {}), Authorization: `Bearer ${token}`}});
  if (answer.status === 401) { logout(); throw new Error("logged out"); }
  const body = answer.status === 204 ? null : await answer.json();
  if (!answer.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
  return body;
}

// ---- login ---------------------------------------------------------------------------------------
$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await fetch(`${API}/auth/token`, {method: "POST", body: new URLSearchParams(form)});
  const body = await answer.json();
  if (!answer.ok) { $("#login-error").textContent = body.detail; return; }
  token = body.access_token;
  sessionStorage.setItem("dfstream.token", token);
  start();
});
// the server forgets the session too: a token copied from this tab stops working at once
$("#logout").addEventListener("click", async () => {
  const ending = token;
  logout();
  if (ending) await fetch(`${API}/auth/logout`, {method: "POST", headers: {Authorization: `Bearer ${ending}`}}).catch(() => {});
});

function logout() {
  token = null;
  sessionStorage.removeItem("dfstream.token");
  stopView();
  $("#app").hidden = true;
  $("#login").hidden = false;
}

async function start() {
  try {
    const me = await call("/users/me");
    $("#who").textContent = `${me.username} (${me.role})`;
  } catch { return logout(); }
  $("#login").hidden = true;
  $("#app").hidden = false;
  watchAlerts();
  route();
}

// ---- routing -------------------------------------------------------------------------------------
function stopView() { cleanup.forEach((stop) => stop()); cleanup = []; }
addEventListener("hashchange", () => token && route());

function route() {
  stopView();
  const [, page, id] = location.hash.split("/");
  const view = $("#view");
  ({"": streamsView, stream: streamView, events: eventsView, event: eventView, media: mediaView, alerts: alertsView, call: callView}[page || ""]
    || streamsView)(view, id && decodeURIComponent(id));
}

function every(ms, action) { action(); const timer = setInterval(action, ms); cleanup.push(() => clearInterval(timer)); }

// The live feed. EventSource reconnects by itself and sends the last id it got: the server replays
// what was missed, or sends "reset" (too long away, or dfstream restarted) and then the recent past.
// "ready" marks where the replay ends.
function feed(query, handlers) {
  const source = new EventSource(withToken(`${API}/feed?${query}`));
  for (const [kind, handle] of Object.entries(handlers)) source.addEventListener(kind, (e) => handle(JSON.parse(e.data)));
  return source;
}

// ---- streams -------------------------------------------------------------------------------------
function streamsView(view) {
  view.innerHTML = `<div class="grid" id="streams"></div>`;
  const cards = new Map();
  every(2000, async () => {
    for (const s of await call("/streams")) {
      let card = cards.get(s.id);
      if (!card) {
        card = document.createElement("div");
        card.className = "card";
        card.dataset.stream = s.id;
        card.innerHTML = `<img alt="${escape(s.id)} live" src="${withToken(`${API}/streams/${encodeURIComponent(s.id)}/live.mjpeg?fps=2&width=480`)}">
          <div class="meta"><span><strong>${escape(s.id)}</strong> <span class="muted status"></span></span><span><span class="label voice" hidden></span> <span class="label face"></span></span></div>`;
        card.addEventListener("click", () => { location.hash = `#/stream/${encodeURIComponent(s.id)}`; });
        $("#streams").append(card);
        cards.set(s.id, card);
      }
      $(".status", card).textContent = s.status;
      const label = $(".label.face", card);
      label.className = `label face ${s.label}`;
      label.textContent = s.label === "no_face" ? "no face" : s.label + (s.fake_probability != null ? ` ${s.fake_probability.toFixed(2)}` : "");
      showVoice($(".label.voice", card), s.voice, s.spoof_probability);
    }
  });
  cleanup.push(() => view.querySelectorAll("img").forEach((img) => { img.src = ""; }));  // ends the MJPEG responses
}

// the voice's label: hidden while the voice is not judged or no sound reaches it
function showVoice(element, state, spoof) {
  element.hidden = state == null || state === "no_audio";
  element.className = `label voice ${state === "no_speech" ? "no_face" : state}`;
  element.dataset.label = state || "";
  element.textContent = state === "no_speech" ? "voice: no speech" : `voice ${state}` + (spoof != null ? ` ${spoof.toFixed(2)}` : "");
}

function streamView(view, id) {
  view.innerHTML = `<h2>${escape(id)} <span class="label" id="stream-label"></span> <span class="label voice" id="voice-label" hidden></span></h2>
    <div class="stream-page">
      <img class="live" id="live" alt="${escape(id)} live" src="${withToken(`${API}/streams/${encodeURIComponent(id)}/live.mjpeg?fps=5&width=960`)}">
      <div><canvas class="chart" id="chart" width="600" height="260"></canvas>
        <p class="muted">Smoothed P(fake) of each face track, and the voice's P(spoof) (dashed), over the last two minutes
          <span class="feed-away">· reconnecting: what happens meanwhile is filled in on return</span></p></div>
    </div>`;
  const points = new Map();  // track -> [[t, p, label]]
  const voicePoints = [];  // [[t, p, label]] of the voice windows judged
  const label = $("#stream-label");
  // the last two minutes first (the server keeps them), so the chart is full from the start
  const source = feed(`types=verdict,voice,state&stream=${encodeURIComponent(id)}&replay_s=120`, {
    reset: () => { points.clear(); voicePoints.length = 0; },  // the recent past follows
    voice: (v) => {
      if (v.spoof_probability != null) voicePoints.push([v.ts, v.spoof_probability, v.label]);
      // the badge follows the voice's incident: fake through a dip of its label, until it closes
      showVoice($("#voice-label"), v.incident != null && v.label !== "no_speech" ? "fake" : v.label, v.spoof_probability);
    },
    verdict: (v) => {
      if (!points.has(v.track_id)) points.set(v.track_id, []);
      points.get(v.track_id).push([v.ts, v.fake_probability, v.label]);
      const shown = v.incident != null ? "fake" : v.label;  // the badge follows the face's incident
      label.className = `label ${shown}`;
      label.textContent = `${shown} ${v.fake_probability.toFixed(2)}`;
      label.dataset.label = shown;
    },
    state: (s) => {
      if (s.label === "no_face") { label.className = "label no_face"; label.textContent = "no face"; }
      if (s.voice == null || s.voice === "no_audio") showVoice($("#voice-label"), s.voice, null);
    },
  });
  every(500, () => {
    const now = Date.now() / 1000;
    const series = [];
    for (const [track, list] of points) {
      while (list.length && list[0][0] < now - 120) list.shift();
      // each stretch in the colour of its label: an episode stays red after it has ended
      if (list.length) series.push({name: `#${track}`, points: list.map(([t, p, l]) => [t - now, p, COLOURS[l]]), colour: COLOURS[list.at(-1)[2]]});
    }
    while (voicePoints.length && voicePoints[0][0] < now - 120) voicePoints.shift();
    if (voicePoints.length) {
      series.push({name: "voice", points: voicePoints.map(([t, p, l]) => [t - now, p, COLOURS[l]]), colour: COLOURS[voicePoints.at(-1)[2]], dashed: true});
    }
    chart($("#chart"), series, [-120, 0]);
  });
  // data-feed on the body: whether the chart is live (the caption says so while it is not)
  // and the live image, which a lost connection breaks for good, asked for again when the feed is back
  const live = $("#live").src;
  source.addEventListener("ready", () => {
    if (document.body.dataset.feed === "reconnecting") $("#live").src = `${live}&again=${Date.now()}`;
    document.body.dataset.feed = "live";
  });
  source.addEventListener("error", () => { document.body.dataset.feed = "reconnecting"; });
  cleanup.push(() => source.close(), () => { $("#live").src = ""; }, () => { delete document.body.dataset.feed; });
}

// a line chart of P(fake) (0..1) against x, on a canvas; a point [x, p, colour] colours the line up to it
function chart(canvas, series, [x0, x1]) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#334155"; ctx.fillStyle = "#94a3b8"; ctx.font = "12px system-ui"; ctx.lineWidth = 1;
  const legend = 84;  // the right margin, for the series' names: they never cover a line
  const x = (v) => pad + (v - x0) / (x1 - x0 || 1) * (w - pad - legend);
  const y = (p) => h - pad - p * (h - 2 * pad);
  for (const p of [0, 0.5, 1]) {
    ctx.beginPath(); ctx.moveTo(pad, y(p)); ctx.lineTo(w - legend, y(p)); ctx.stroke();
    ctx.fillText(p.toFixed(1), 2, y(p) + 4);
  }
  // each line in runs of one colour (one path each: thousands of tiny strokes would draw it faint),
  // fake runs last: where tracks overlap, an episode is never drawn over
  const runs = [];
  series.forEach((s, i) => {
    const base = s.colour || SERIES[i % SERIES.length];
    let run = null;
    s.points.forEach(([t, p, colour], k) => {
      if (k && (!run || run.colour !== (colour || base))) {
        run = {colour: colour || base, dashed: s.dashed, points: [s.points[k - 1]]};
        runs.push(run);
      }
      if (run) run.points.push([t, p]);
    });
  });
  ctx.lineWidth = 2.5; ctx.lineJoin = "round";
  for (const run of [...runs.filter((r) => r.colour !== COLOURS.fake), ...runs.filter((r) => r.colour === COLOURS.fake)]) {
    ctx.strokeStyle = run.colour;
    ctx.setLineDash(run.dashed ? [8, 5] : []);
    ctx.beginPath();
    run.points.forEach(([t, p], k) => (k ? ctx.lineTo(x(t), y(p)) : ctx.moveTo(x(t), y(p))));
    ctx.stroke();
  }
  series.forEach((s, i) => {
    ctx.strokeStyle = ctx.fillStyle = s.colour || SERIES[i % SERIES.length];
    ctx.setLineDash([]);
    // a dashed series is of discrete windows (the voice): each is marked, so one window shows too
    if (s.dashed) {
      s.points.forEach(([t, p, colour]) => {
        ctx.fillStyle = colour || ctx.strokeStyle;
        ctx.beginPath(); ctx.arc(x(t), y(p), 4, 0, 2 * Math.PI); ctx.fill();
      });
    }
    // named in the corner: the newest few (a stream whose faces come and go has had many tracks)
    const rank = series.length - 1 - i;
    if (rank < 6) { ctx.fillStyle = ctx.strokeStyle; ctx.fillText(s.name, w - legend + 8, 16 + 14 * rank); }
  });
}

// ---- events --------------------------------------------------------------------------------------
function eventsView(view) {
  view.innerHTML = `<div class="filters">
      <label>Stream <input id="f-stream" placeholder="all"></label>
      <label>Acknowledged <select id="f-ack"><option value="">any</option><option value="false">no</option><option value="true">yes</option></select></label>
      <button id="f-apply" type="button">Show</button></div>
    <table><thead><tr><th>Evidence</th><th>Stream</th><th>Started</th><th>Lasted</th><th>Peak P(fake)</th><th>Acknowledged</th></tr></thead>
    <tbody id="events"></tbody></table><button id="more" type="button" hidden>More</button>`;
  let cursor = null;
  async function load(reset) {
    const query = new URLSearchParams({limit: "25"});
    if ($("#f-stream").value) query.set("stream", $("#f-stream").value);
    if ($("#f-ack").value) query.set("acknowledged", $("#f-ack").value);
    if (!reset && cursor) query.set("cursor", cursor);
    const page = await call(`/events?${query}`);
    if (reset) $("#events").innerHTML = "";
    for (const e of page.items) {
      const row = document.createElement("tr");
      row.dataset.event = e.id;
      const lasted = e.ongoing ? "ongoing" : `${((new Date(e.ended_at) - new Date(e.started_at)) / 1000).toFixed(1)} s`;
      row.dataset.modality = e.modality;
      const evidence = e.modality === "voice"
        ? `<a href="#/event/${e.id}" class="voice-event">voice</a>`
        : `<a href="#/event/${e.id}"><img class="thumb" alt="face" src="${withToken(e.face_url)}"></a>`;
      row.innerHTML = `<td>${evidence}</td>
        <td>${escape(e.stream)} ${e.modality === "voice" ? "voice" : `#${e.track_id}`}</td><td>${when(e.started_at)}</td><td>${lasted}</td>
        <td><span class="label fake">${e.peak_probability.toFixed(2)}</span></td>
        <td>${e.acknowledged_by ? escape(e.acknowledged_by) : `<button type="button" data-ack="${e.id}">Acknowledge</button>`}</td>`;
      $("#events").append(row);
    }
    cursor = page.next_cursor;
    $("#more").hidden = !cursor;
  }
  view.addEventListener("click", async (event) => {
    const id = event.target.dataset.ack;
    if (id) { await call(`/events/${id}/ack`, {method: "POST"}); load(true); }
  });
  $("#f-apply").addEventListener("click", () => load(true));
  $("#more").addEventListener("click", () => load(false));
  load(true);
}

async function eventView(view, id) {
  const e = await call(`/events/${encodeURIComponent(id)}`);
  const models = Object.entries(e.models_at_peak).map(([m, p]) => `${escape(m)} ${p.toFixed(2)}`).join(", ");
  const voice = e.modality === "voice";
  const evidence = voice
    ? `<p>The window of speech at the peak:</p><audio id="event-audio" controls preload="auto" src="${withToken(e.audio_url)}"></audio>`
    : `<img id="event-frame" alt="the frame at the peak" src="${withToken(e.frame_url)}">
       <img alt="the face at the peak" src="${withToken(e.face_url)}">`;
  view.innerHTML = `<div class="detail"><p><a href="#/events">← Events</a></p>
    <h2>${escape(e.stream)} ${voice ? "voice" : `#${e.track_id}`} <span class="label fake">likely ${voice ? "synthetic voice" : "deepfake"} ${e.peak_probability.toFixed(2)}</span></h2>
    <p>${when(e.started_at)} → ${e.ongoing ? "ongoing" : `${when(e.ended_at)}${e.end_reason ? ` (${ENDED[e.end_reason] || e.end_reason})` : ""}`}; mean P(${voice ? "spoof" : "fake"}) ${e.mean_probability.toFixed(2)} over
    ${e.verdicts} ${voice ? "windows" : "verdicts"}; at the peak: ${models}</p>
    <p>${e.acknowledged_by ? `Acknowledged by ${escape(e.acknowledged_by)} at ${when(e.acknowledged_at)}` : ""}</p>
    ${evidence}</div>`;
}

// ---- media ---------------------------------------------------------------------------------------
function mediaView(view, id) {
  view.innerHTML = `<form id="upload"><input type="file" name="file" id="file" accept="video/*" required>
      <button type="submit">Upload</button> <progress id="sent" max="1" value="0" hidden></progress>
      <span class="error" id="upload-error"></span></form>
    <table><thead><tr><th>File</th><th>Size</th><th>Status</th><th>Verdict</th><th>Uploaded</th></tr></thead><tbody id="media"></tbody></table>
    <div id="results"></div>`;
  $("#upload").addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();  // fetch cannot report upload progress
    request.open("POST", `${API}/media`);
    request.setRequestHeader("Authorization", `Bearer ${token}`);
    request.upload.onprogress = (e) => { $("#sent").hidden = false; $("#sent").value = e.loaded / e.total; };
    request.onload = () => {
      const body = JSON.parse(request.responseText);
      $("#upload-error").textContent = request.status === 201 ? "" : body.detail;
      refresh();
    };
    request.send(new FormData(event.target));
  });
  async function refresh() {
    const rows = await call("/media?limit=50");
    $("#media").innerHTML = rows.map((m) => `<tr data-media="${m.id}" data-status="${m.status}">
      <td><a href="#/media/${m.id}">${escape(m.original_name)}</a></td><td>${(m.size / 1e6).toFixed(1)} MB</td>
      <td>${m.status === "running" || m.status === "queued" ? `<progress max="1" value="${m.progress}"></progress>` : escape(m.status)}
        ${m.error ? `<span class="error">${escape(m.error)}</span>` : ""}</td>
      <td>${m.verdict ? `<span class="label ${m.verdict}">${m.verdict} ${m.fake_probability.toFixed(2)}</span>` : ""}</td>
      <td>${when(m.created_at)}</td></tr>`).join("");
  }
  every(1000, refresh);
  if (id) results(id);
}

async function results(id) {
  const r = await call(`/media/${encodeURIComponent(id)}/results`).catch((error) => ({error}));
  const target = $("#results");
  if (r.error) { target.innerHTML = `<p class="muted">${escape(r.error.message)}</p>`; return; }
  const largest = r.rows.filter((row) => row.face === 0);
  target.innerHTML = `<h2>Verdict: <span class="label ${r.verdict}" id="media-verdict">${r.verdict} ${r.fake_probability.toFixed(2)}</span></h2>
    <p class="muted">${r.frames_scored} frames, ${r.aggregation} of the largest face's fused P(fake); per detector:</p>
    <canvas class="chart" id="media-chart" width="800" height="260"></canvas>`;
  const names = Object.keys(r.models);
  const frames = largest.map((row) => row.frame);
  const series = names.map((name, i) => ({name, colour: SERIES[i % SERIES.length], points: largest.map((row) => [row.frame, row.models[name]])}));
  series.push({name: "fused", colour: "#f8fafc", points: largest.map((row) => [row.frame, row.fake_probability])});
  chart($("#media-chart"), series, [Math.min(...frames), Math.max(...frames)]);
}

// ---- alerts --------------------------------------------------------------------------------------
function watchAlerts() {
  const source = feed("types=alert", {
    alert: (a) => {
      const key = `${a.type}/${a.subject}`;
      a.state === "firing" ? alerts.set(key, a) : alerts.delete(key);
      $("#alert-count").hidden = !alerts.size;
      $("#alert-count").textContent = alerts.size;
      if (location.hash === "#/alerts") route();
    },
  });
  addEventListener("beforeunload", () => source.close());
}

function alertsView(view) {
  view.innerHTML = alerts.size
    ? `<table><thead><tr><th>Alert</th><th>Subject</th><th>Value</th><th>Threshold</th><th>Since</th></tr></thead><tbody>${
        [...alerts.values()].map((a) => `<tr><td>${escape(a.type)}</td><td>${escape(a.subject)}</td><td>${a.value.toFixed(2)}</td>
          <td>${a.threshold}</td><td>${new Date(a.ts * 1000).toLocaleString()}</td></tr>`).join("")}</tbody></table>`
    : `<p class="muted">No alert is firing.</p>`;
}

if (token) start(); else logout();

// ---- check a call ----------------------------------------------------------------------------------
// The analyst shares a tab, window or screen (getDisplayMedia, with the tab's sound where the browser
// offers it) or a camera and microphone; the media goes to dfstream over WebRTC (POST /calls with the
// offer, every ICE candidate in it) and comes back judged: boxes over the preview, the overall badge.
// The call outlives this view (it ends when the share ends, End is pressed, or the tab closes).
let current = null;  // {pc, media, stream, session}

async function startCall(kind) {
  if (current) return current;
  const media = kind === "screen"
    ? await navigator.mediaDevices.getDisplayMedia({video: {frameRate: {ideal: 15, max: 30}}, audio: true})
    : await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 1280}, height: {ideal: 720}}, audio: true});
  const {ice_servers} = await call("/calls/ice");
  const pc = new RTCPeerConnection({iceServers: ice_servers.map((s) => ({urls: s.urls, username: s.username || undefined, credential: s.credential || undefined}))});
  for (const track of media.getTracks()) pc.addTransceiver(track, {direction: "sendonly", streams: [media]});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {  // the offer with every candidate: dfstream does not trickle
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
    setTimeout(done, 3000);
  });
  let answer;
  try {
    answer = await call("/calls", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({sdp: pc.localDescription.sdp})});
  } catch (error) { media.getTracks().forEach((t) => t.stop()); pc.close(); throw error; }
  await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
  current = {pc, media, stream: answer.stream, session: answer.session};
  // the browser's own "Stop sharing" ends the video track: the call ends with it
  media.getVideoTracks()[0].addEventListener("ended", () => endCall());
  return current;
}

async function endCall() {
  const ending = current;
  if (!ending) return;
  current = null;
  ending.media.getTracks().forEach((t) => t.stop());
  await call(`/calls/${encodeURIComponent(ending.session)}`, {method: "DELETE"}).catch(() => {});
  ending.pc.close();
  if (location.hash.startsWith("#/call")) route();
}
addEventListener("pagehide", () => {
  if (current) fetch(`${API}/calls/${encodeURIComponent(current.session)}`, {method: "DELETE", keepalive: true, headers: {Authorization: `Bearer ${token}`}});
});

// why an event ended, as the detail page says it
const ENDED = {label: "no longer judged fake", track_gone: "the face was lost", sound_gone: "the sound stopped",
  stream_down: "the stream went down", shutdown: "dfstream stopped", restart: "left open by a run that died"};

// #/call/compact: the page as the overlay for the shared window -- only the picture, its boxes and
// the badges, in a window small enough to sit beside (or, kept on top, over) the call
function callView(view, mode) {
  const compact = mode === "compact";
  document.body.classList.toggle("compact-call", compact);
  cleanup.push(() => document.body.classList.remove("compact-call"));
  view.innerHTML = `<h2>Check a call <span class="label no_face" id="call-label">not sharing</span>
      <span class="label voice" id="call-voice" hidden></span></h2>
    <p class="muted" id="call-help">Share the call's tab or window (Teams, Zoom, Meet in a browser or an app), your screen, or a camera.
      dfstream judges every face in it and the voice; the verdicts come back here, over the picture.</p>
    <div class="filters">
      <button type="button" id="share-screen">Share a tab, window or screen</button>
      <button type="button" id="share-camera">Use camera and microphone</button>
      <button type="button" id="end-call" hidden>End</button>
      <a id="call-compact" class="button" href="${compact ? "#/call" : "#/call/compact"}">${compact ? "Full page" : "Compact"}</a>
      <span id="call-stream" class="muted"></span>
    </div>
    <p id="call-error" class="error" role="alert"></p>
    <div class="call-stage" id="call-stage" hidden>
      <video id="call-preview" autoplay muted playsinline></video>
      <canvas id="call-boxes"></canvas>
    </div>`;
  const share = async (kind) => {
    $("#call-error").textContent = "";
    try { await startCall(kind); } catch (error) { $("#call-error").textContent = `could not start the call: ${error.message || error}`; return; }
    callView(view, mode);
  };
  $("#share-screen").addEventListener("click", () => share("screen"));
  $("#share-camera").addEventListener("click", () => share("camera"));
  $("#end-call").addEventListener("click", () => endCall());
  if (!current) return;
  const {stream, media} = current;
  $("#share-screen").hidden = $("#share-camera").hidden = true;
  $("#end-call").hidden = false;
  $("#call-stage").hidden = false;
  $("#call-stream").innerHTML = `stream <a href="#/stream/${encodeURIComponent(stream)}">${escape(stream)}</a>
    · overlay <a href="/overlay/${encodeURIComponent(stream)}" target="_blank" rel="noopener">/overlay/${escape(stream)}</a>`;
  const preview = $("#call-preview");
  preview.srcObject = media;
  const boxes = new Map();  // track -> latest verdict
  const frames = [];  // the last two frames verdicts came from
  const label = $("#call-label");
  label.textContent = "waiting for the first picture"; label.className = "label pending";
  const source = feed(`types=verdict,voice,state,status&stream=${encodeURIComponent(stream)}`, {
    verdict: (v) => {
      // every live track has a verdict on every frame judged: a box whose track had none on the
      // last two frames is of a face the finder has lost (it stays in the state a moment longer)
      const last = frames[frames.length - 1];
      if (last !== undefined && v.frame_seq < last) { boxes.clear(); frames.length = 0; }  // a new picture
      if (v.frame_seq !== frames[frames.length - 1]) { frames.push(v.frame_seq); if (frames.length > 2) frames.shift(); }
      boxes.set(v.track_id, v);
    },
    state: (s) => {
      for (const id of boxes.keys()) if (!(String(id) in s.tracks)) boxes.delete(id);
      label.className = `label ${s.label}`;
      label.dataset.label = s.label;
      label.textContent = s.label === "no_face" ? "no face" : `${s.label}${s.fake_probability != null ? " " + s.fake_probability.toFixed(2) : ""}`;
      showVoice($("#call-voice"), s.voice, s.spoof_probability);
    },
    voice: (v) => showVoice($("#call-voice"), v.label, v.spoof_probability),
    status: (s) => { if (s.status !== "online") { label.className = "label no_face"; label.textContent = s.status; } },
  });
  const canvas = $("#call-boxes");
  every(100, () => drawBoxes(canvas, preview, boxes, frames[0]));
  cleanup.push(() => source.close());
}

// the judged faces over the preview: the video is letterboxed in its element (object-fit: contain)
function drawBoxes(canvas, video, boxes, oldest) {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  for (const v of boxes.values()) {
    if (oldest !== undefined && v.frame_seq < oldest) continue;
    const [fw, fh] = v.frame_size;
    const scale = Math.min(w / fw, h / fh), ox = (w - fw * scale) / 2, oy = (h - fh * scale) / 2;
    const [x1, y1, x2, y2] = v.bbox.map((c, i) => (i % 2 ? oy : ox) + c * scale);
    ctx.strokeStyle = ctx.fillStyle = COLOURS[v.label] || COLOURS.pending;
    ctx.lineWidth = 4;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${v.label} ${v.fake_probability.toFixed(2)}`;
    ctx.font = "bold 16px system-ui";
    const tw = ctx.measureText(text).width + 10;
    ctx.fillRect(x1 - 2, Math.max(0, y1 - 24), tw, 22);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 3, Math.max(16, y1 - 7));
  }
}
