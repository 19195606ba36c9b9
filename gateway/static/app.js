// ReHab Live browser app: pick an exercise, watch the guide, start the camera, see your skeleton,
// the live score, hints and repetitions. Cloud mode sends video over WebRTC; on-device mode runs BlazePose
// (@mediapipe/pose, served by the gateway under /vendor/pose/) here and sends keypoints over a data
// channel. URL parameters (for kiosks and tests): ?reference=ID&patient=P&mode=cloud|device&autostart=1;
// ?invite=CODE (the link a clinician sends) is exchanged once for the patient's credential, which this
// browser keeps (localStorage) and trades for a patient token; without one the gateway must be in demo mode.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// COCO-17 limbs for drawing, and BlazePose's 33 landmarks -> COCO-17
const LIMBS = [[5, 7], [7, 9], [6, 8], [8, 10], [11, 13], [13, 15], [12, 14], [14, 16], [5, 6], [11, 12], [5, 11], [6, 12]];
const BLAZE_TO_COCO = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28];
// The published verdicts (rehab/scoring/offline.py: GOOD, NOT_THE_EXERCISE; docs/scoring.md), the same
// words as `rehab score --json` and the REST score route
const GOOD = 0.75, NOT_THE_EXERCISE = 0.35;
const verdictOf = (s) => (s >= GOOD ? "good" : s < NOT_THE_EXERCISE ? "not the exercise" : "needs work");
const state = { pc: null, ws: null, channel: null, stream: null, pose: null, running: false, scores: 0, guideTimer: null };

function status(text) { $("status").textContent = text; }

const CREDENTIAL = "rehab.credential";
const account = { token: null, until: 0 };  // the patient token from the stored credential

async function acceptInvitation(code) {
  const r = await api("/invitations/accept", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code }) });
  localStorage.setItem(CREDENTIAL, JSON.stringify({ credential: r.credential, patient_id: r.patient_id }));
  params.delete("invite");  // the code is spent: keep it out of the address bar and history
  history.replaceState(null, "", `${location.pathname}${params.toString() ? "?" + params : ""}`);
}

function storedCredential() {
  try { return JSON.parse(localStorage.getItem(CREDENTIAL)); } catch (err) { return null; }
}

async function authHeaders() {
  // the patient token for the stored credential (asked again at 80 % of its life); none: demo mode
  const stored = storedCredential();
  if (!stored) return {};
  if (!account.token || Date.now() > account.until) {
    const r = await api("/tokens", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ credential: stored.credential }) });
    account.token = r.token; account.until = Date.now() + r.expires_in_s * 800;
  }
  return { Authorization: `Bearer ${account.token}` };
}

async function signOut() {
  // revokes this browser's credential at the gateway (every token from it), then forgets it
  try { await api("/logout", { method: "POST", headers: await authHeaders() }); } catch (err) { /* revoked already */ }
  localStorage.removeItem(CREDENTIAL); account.token = null;
  if (state.running) await stop();
  status("Signed out. Open your clinician's invitation link to sign in again.");
  showAccount();
}

function showAccount() {
  const stored = storedCredential();
  $("signout").hidden = !stored;
  if (stored) { $("patient").value = stored.patient_id; $("patient").readOnly = true; }
}

async function api(path, options = {}) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function drawSkeleton(ctx, kps, w, h, color, scale = 1, dx = 0, dy = 0) {
  if (!kps) return;
  ctx.lineWidth = 4; ctx.strokeStyle = color; ctx.fillStyle = color;
  for (const [a, b] of LIMBS) {
    if (kps[a][2] < 0.3 || kps[b][2] < 0.3) continue;
    ctx.beginPath();
    ctx.moveTo(kps[a][0] * scale + dx, kps[a][1] * scale + dy);
    ctx.lineTo(kps[b][0] * scale + dx, kps[b][1] * scale + dy);
    ctx.stroke();
  }
  for (const [x, y, c] of kps) if (c >= 0.3) { ctx.beginPath(); ctx.arc(x * scale + dx, y * scale + dy, 4, 0, 7); ctx.fill(); }
}

async function showGuide(refId) {
  clearInterval(state.guideTimer);
  const ref = await api(`/references/${encodeURIComponent(refId)}?frames=true`, { headers: await authHeaders() });
  const canvas = $("guide"), ctx = canvas.getContext("2d");
  const frames = ref.frames.filter((f) => f);
  if (!frames.length) return;
  const xs = frames.flat().filter((p) => p[2] >= 0.3);
  const minX = Math.min(...xs.map((p) => p[0])), maxX = Math.max(...xs.map((p) => p[0]));
  const minY = Math.min(...xs.map((p) => p[1])), maxY = Math.max(...xs.map((p) => p[1]));
  const scale = 0.9 * Math.min(canvas.width / (maxX - minX), canvas.height / (maxY - minY));
  let i = 0;
  state.guideTimer = setInterval(() => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    drawSkeleton(ctx, frames[i % frames.length], 0, 0, "#1d4e89", scale,
      (canvas.width - (maxX - minX) * scale) / 2 - minX * scale, (canvas.height - (maxY - minY) * scale) / 2 - minY * scale);
    i += 1;
  }, 1000 / Math.min(ref.fps, 30));
}

function showScore(score) {
  state.scores += 1;
  const sim = $("similarity");
  sim.textContent = Math.round(score.similarity * 100);
  sim.dataset.count = String(state.scores);
  sim.dataset.value = String(score.similarity);
  const verdict = verdictOf(score.similarity);
  sim.className = { "good": "good", "needs work": "ok", "not the exercise": "poor" }[verdict];
  $("verdict").textContent = verdict;
  $("verdict").className = sim.className;
  $("session").textContent = Math.round(score.session_similarity * 100);
  $("reps").textContent = score.reps;
  $("hints").replaceChildren(...score.corrections.slice(0, 3).map((c) => {
    const li = document.createElement("li"); li.textContent = c.message;
    if (c.mistake) li.className = "mistake";  // a named mistake the clinician recorded
    return li;
  }));
  $("latency").textContent = `phase ${score.phase.toFixed(2)} · score ${Date.now() - score.window_end_ts_ms} ms after capture`;
}

function drawOwn(kps, width, height) {
  const video = $("camera"), canvas = $("overlay");
  canvas.width = video.videoWidth || width; canvas.height = video.videoHeight || height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  drawSkeleton(ctx, kps, width, height, "#22c55e", canvas.width / width);
}

function onMessage(data) {
  const msg = JSON.parse(data);
  if (msg.schema === "score.v1") showScore(msg);
  else if (msg.type === "score") showScore(msg.score);
  else if (msg.schema === "keypoint_frame.v1") drawOwn(msg.keypoints, msg.width, msg.height);
  else if (msg.type === "error") status(`The gateway refused a message: ${msg.reason}`);
}

async function negotiate(pc, session) {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // aiortc takes complete offers (no trickle ICE)
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  const answer = await api(`/sessions/${session.session_id}/offer`, {
    method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${session.token}` },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
  });
  await pc.setRemoteDescription(answer);
}

async function startDeviceModel(channel) {
  if (!window.Pose) {
    await new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/vendor/pose/pose.js"; s.onload = resolve; s.onerror = () => reject(new Error("BlazePose for the browser is not installed on this gateway"));
      document.head.appendChild(s);
    });
  }
  const pose = new window.Pose({ locateFile: (f) => `/vendor/pose/${f}` });
  // full model by default; ?complexity=0|1|2 forces one. A device too slow for the full model (more
  // than SLOW_MS a frame, e.g. no GPU for WebGL) moves to the lite one: fewer but timely keypoints
  // beat a frame every second, which no window can score.
  const forced = params.get("complexity");
  let complexity = forced !== null ? Number(forced) : 1;
  pose.setOptions({ modelComplexity: complexity, smoothLandmarks: true });
  const SLOW_MS = 180;
  const stats = $("camera").dataset;
  stats.sent = 0; stats.inferMs = 0; stats.complexity = complexity;
  const video = $("camera");
  let seq = 0;
  pose.onResults((res) => {
    const w = video.videoWidth, h = video.videoHeight;
    const lm = res.poseLandmarks;
    const kps = lm ? BLAZE_TO_COCO.map((i) => [lm[i].x * w, lm[i].y * h, Math.max(0, Math.min(1, lm[i].visibility ?? 0))]) : null;
    drawOwn(kps, w, h);
    if (channel.readyState === "open") {
      channel.send(JSON.stringify({ type: "keypoints", seq: seq++, capture_ts_ms: state.frameTs, width: w, height: h,
        keypoints: kps, model: "blazepose-web", model_version: "0.5" }));
      stats.sent = seq;
    }
  });
  state.pose = pose;
  let inferMs = null, frames = 0;
  const loop = async () => {
    if (!state.running) return;
    const started = performance.now();
    if (video.readyState >= 2) {
      state.frameTs = Date.now();
      await pose.send({ image: video });
      const ms = performance.now() - started;
      frames += 1;
      inferMs = inferMs === null ? ms : 0.8 * inferMs + 0.2 * ms;
      stats.inferMs = Math.round(inferMs);
      if (forced === null && complexity > 0 && frames >= 5 && inferMs > SLOW_MS) {
        complexity = 0; frames = 0; inferMs = null;
        pose.setOptions({ modelComplexity: 0, smoothLandmarks: true });
        stats.complexity = 0;
      }
    }
    // 15 fps is plenty for rehabilitation movements; a slower device sends as fast as it infers
    setTimeout(loop, Math.max(0, 1000 / 15 - (performance.now() - started)));
  };
  loop();
}

async function start() {
  const refId = $("exercise").value, mode = document.querySelector("input[name=mode]:checked").value;
  $("start").disabled = true;
  try {
    status("Starting the camera…");
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: 15 }, audio: false });
    $("camera").srcObject = state.stream;
    // with a credential the session is its patient's; in demo mode the patient field names the patient
    const body = storedCredential() ? { reference_id: refId, mode }
      : { reference_id: refId, patient_id: $("patient").value || "patient", mode };
    const session = await api("/sessions", { method: "POST",
      headers: { "Content-Type": "application/json", ...(await authHeaders()) }, body: JSON.stringify(body) });
    state.session = session; state.mode = mode;
    scheduleTokenRefresh(session.expires_in_s);
    await openScores();
    const pc = new RTCPeerConnection({ iceServers: session.ice_servers || [] });  // REHAB_ICE_SERVERS; none: none
    state.pc = pc;
    state.running = true;
    if (mode === "cloud") {
      for (const track of state.stream.getVideoTracks()) pc.addTrack(track, state.stream);
    } else {
      state.channel = pc.createDataChannel("keypoints");
      state.channel.onmessage = (e) => onMessage(e.data);
      state.channel.onopen = () => startDeviceModel(state.channel).catch((err) => status(err.message));
    }
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && state.running) { status("Connection lost: reconnecting…"); reconnect(); }
    };
    await negotiate(pc, session);
    status(mode === "cloud" ? "Streaming your camera. Follow the guide." : "The pose model runs on this device. Follow the guide.");
    $("stop").disabled = false;
  } catch (err) {
    status(`Could not start: ${err.message}`);
    $("start").disabled = false;
  }
}

function openScores() {
  // the score stream; the gateway closes it (4401) when its token expires or is revoked: after an
  // expiry it is opened again with the refreshed token
  const token = state.session.token;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/sessions/${state.session.session_id}/scores?token=${encodeURIComponent(token)}&keypoints=${state.mode === "cloud"}`);
  state.ws = ws;
  ws.onmessage = (e) => onMessage(e.data);
  ws.onclose = (e) => {
    if (!state.running || state.ws !== ws) return;
    if (e.code === 4401 && state.session.token !== token) { state.streamReopens = (state.streamReopens || 0) + 1; openScores(); return; }
    if (e.code >= 4000) status(`Score stream closed: ${e.reason}`);
  };
  return new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("score stream unavailable")); });
}

function scheduleTokenRefresh(ttlS) {
  // a new token at 80 % of the old one's life, so a session longer than REHAB_TOKEN_TTL_S can still
  // reconnect (a reconnect's offer needs a valid token); the old token stays valid until it expires
  clearTimeout(state.tokenTimer);
  if (!ttlS) return;
  state.tokenTimer = setTimeout(async () => {
    if (!state.running) return;  // stopped (or never started): the session needs no new token
    try {
      const fresh = await api(`/sessions/${state.session.session_id}/token`, { method: "POST",
        headers: { Authorization: `Bearer ${state.session.token}` } });
      state.session.token = fresh.token; state.session.expires_at = fresh.expires_at;
      if (fresh.ice_servers) state.session.ice_servers = fresh.ice_servers;  // fresh TURN credentials too
      state.tokenRefreshes = (state.tokenRefreshes || 0) + 1;
      scheduleTokenRefresh(fresh.expires_in_s);
    } catch (err) {
      if (state.running) scheduleTokenRefresh(Math.max(ttlS / 4, 5));  // try again, sooner
    }
  }, Math.max(ttlS * 0.8, 1) * 1000);
}

async function reconnect() {
  // a fresh peer connection for the same session (the gateway replaces the old one)
  const old = state.pc; const pc = new RTCPeerConnection({ iceServers: state.session.ice_servers || [] }); state.pc = pc;
  old && old.close();
  for (const track of state.stream.getVideoTracks()) pc.addTrack(track, state.stream);
  try { await negotiate(pc, state.session); status("Reconnected."); } catch (err) { status(`Reconnect failed: ${err.message}`); }
}

async function stop() {
  state.running = false;
  clearTimeout(state.tokenTimer);
  state.pc && state.pc.close();
  state.ws && state.ws.close();
  state.stream && state.stream.getTracks().forEach((t) => t.stop());
  if (state.session) {
    await fetch(`/sessions/${state.session.session_id}`, { method: "DELETE", headers: { Authorization: `Bearer ${state.session.token}` } });
  }
  $("start").disabled = false; $("stop").disabled = true;
  status("Stopped. Well done!");
}

async function init() {
  $("signout").onclick = signOut;
  try {
    if (params.get("invite")) await acceptInvitation(params.get("invite"));
  } catch (err) {
    status(`This invitation cannot be used: ${err.message}`);
  }
  showAccount();
  try {
    const refs = await api("/references", { headers: await authHeaders() });
    $("exercise").replaceChildren(...refs.map((r) => { const o = document.createElement("option"); o.value = r.id; o.textContent = r.name; return o; }));
    if (params.get("reference")) $("exercise").value = params.get("reference");
    if (params.get("patient")) $("patient").value = params.get("patient");
    // mode=device (keypoints from this device); mode=edge is its older name
    if (params.get("mode")) document.querySelector(`input[name=mode][value=${["device", "edge"].includes(params.get("mode")) ? "device" : "cloud"}]`).checked = true;
    $("exercise").onchange = () => showGuide($("exercise").value);
    if (refs.length) await showGuide($("exercise").value);
    else status("No exercises yet: a clinician registers a guide video first.");
  } catch (err) {
    status(storedCredential() || !/^401|token/.test(err.message) ? `The gateway is not reachable: ${err.message}`
      : "Open the invitation link your clinician sent you: this service needs it.");
  }
  $("start").onclick = start;
  $("stop").onclick = stop;
  if (params.get("autostart") === "1") start();
}

init();
