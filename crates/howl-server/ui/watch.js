"use strict";
// /watch/<lobby>: one lobby in a browser over WebRTC; /play/<app>: the caller's own instance
// of an app (started, or resumed within its linger, by the app's WHEP endpoint; `?width=&
// height=&fps=` choose the mode it starts in). The page offers to receive video and
// audio, POSTs the offer to the lobby's WHEP endpoint with the API token the operator UI
// keeps in sessionStorage (or one typed here), and shows what comes back. Leaving the page
// DELETEs the WHEP resource so the viewer ends at once instead of by its deadline. A lost
// connection (or a busy server) is retried with backoff; a refusal (bad token, no such lobby,
// no common codec) is shown and not retried. A small overlay shows what arrives.
// Input goes back over two data channels: keys, buttons, wheel and text ordered and reliable;
// pointer moves unordered without retransmits (only the newest position matters). Keys are
// sent by their layout-independent `code`; everything held is released on blur, on hiding
// the page and before reconnecting. A view-only viewer's input is dropped by the server.
// Gamepads (the Gamepad API's standard layout) are polled and each changed state sent on the
// reliable channel. The clipboard crosses both ways on it: a paste in the page becomes the
// desktop's clipboard (Ctrl+V's key-down waits for the paste's text, so the desktop pastes
// the new text), and what the desktop's apps copy is kept here and written to the system
// clipboard where the browser allows it. In /play, pointer lock (the button, or Ctrl+Alt+P;
// Esc leaves it) sends relative motion instead of positions.
(() => {
  const TOKEN_KEY = "howl.token";
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const status = (text) => { $("status").textContent = text; };
  const playing = location.pathname.startsWith("/play/");
  const lobbyArg = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  let resource = null;
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  // Reconnect backoff: doubles from the first to the last value, reset once connected.
  const RETRY_FIRST_MS = 500;
  const RETRY_MAX_MS = 8000;
  let retryMs = RETRY_FIRST_MS;
  let retryTimer = 0;
  let statsTimer = 0;

  // Tests and curious operators: the live connection and its WHEP resource.
  // `clipboard`: the desktop's clipboard as last received; `feedGamepads(list)`: feeds
  // Gamepad-like objects ({index, buttons: [{pressed, value}], axes}) to the same path
  // navigator.getGamepads() takes (and stops polling the real ones), for tests without pads.
  window.howlWatch = { pc: null, resource: null, input: null, pointer: null, clipboard: null };

  // ----- input -----
  const heldKeys = new Set();
  const heldButtons = new Set();
  function send(channel, msg) {
    const c = window.howlWatch[channel];
    if (c && c.readyState === "open") c.send(JSON.stringify(msg));
  }
  function mods(e) {
    return (e.shiftKey ? 1 : 0) | (e.ctrlKey ? 2 : 0) | (e.altKey ? 4 : 0) | (e.metaKey ? 8 : 0);
  }
  function releaseAll() {
    pendingPaste = null;
    for (const code of heldKeys) send("input", { k: "key", code, down: false, mods: 0 });
    for (const button of heldButtons) send("input", { k: "button", button, down: false });
    heldKeys.clear();
    heldButtons.clear();
    releasePads();
  }

  // ----- gamepads -----
  const PAD_POLL_MS = 16;
  const MAX_PADS = 16;
  const padsSent = new Map(); // index -> the last state sent, as JSON
  let padTimer = 0;
  let syntheticPads = false;
  function padMessage(gp) {
    // Digital buttons as 0/1, the triggers (6, 7) analog; the server maps the standard layout.
    return JSON.stringify({
      k: "pad", i: gp.index,
      b: Array.from(gp.buttons || [], (x, n) => (n === 6 || n === 7 ? Number(x.value) || 0 : (x.pressed ? 1 : 0))),
      a: Array.from(gp.axes || [], (v) => Number(v) || 0),
    });
  }
  function sendPads(list) {
    const seen = new Set();
    for (const gp of list || []) {
      if (!gp || gp.connected === false || !(gp.index >= 0 && gp.index < MAX_PADS)) continue;
      seen.add(gp.index);
      const msg = padMessage(gp);
      const c = window.howlWatch.input;
      if (padsSent.get(gp.index) !== msg && c && c.readyState === "open") {
        c.send(msg);
        padsSent.set(gp.index, msg);
      }
    }
    for (const i of [...padsSent.keys()]) {
      if (!seen.has(i)) {
        padsSent.delete(i);
        send("input", { k: "pad", i, gone: true });
      }
    }
  }
  // Pads at rest (still plugged in): nothing stays pressed while the page is away.
  function releasePads() {
    for (const i of padsSent.keys()) {
      const rest = JSON.stringify({ k: "pad", i, b: [], a: [] });
      if (padsSent.get(i) !== rest) {
        send("input", JSON.parse(rest));
        padsSent.set(i, rest);
      }
    }
  }
  function pollPads() {
    if (syntheticPads || document.hidden || !document.hasFocus()) return;
    const list = navigator.getGamepads ? Array.from(navigator.getGamepads()) : [];
    sendPads(list);
    if (!list.some((gp) => gp) && padsSent.size === 0) {
      clearInterval(padTimer);
      padTimer = 0;
    }
  }
  window.addEventListener("gamepadconnected", () => {
    if (!padTimer && !syntheticPads) padTimer = setInterval(pollPads, PAD_POLL_MS);
  });
  window.addEventListener("gamepaddisconnected", pollPads);
  window.howlWatch.feedGamepads = (list) => {
    syntheticPads = true;
    sendPads(list);
  };

  // ----- clipboard -----
  const MAX_CLIPBOARD_BYTES = 32 * 1024;
  // A Ctrl/Cmd+V whose key-down waits for the paste event (its text goes first).
  let pendingPaste = null;
  function flushPaste() {
    if (!pendingPaste) return;
    send("input", { k: "key", code: pendingPaste.code, down: true, mods: pendingPaste.mods });
    pendingPaste = null;
  }
  function fromDesktop(e) {
    let msg;
    try { msg = JSON.parse(e.data); } catch (_) { return; }
    if (!msg || msg.k !== "clipboard" || typeof msg.text !== "string") return;
    window.howlWatch.clipboard = msg.text;
    $("clipboard").textContent = msg.text;
    // Allowed only while the page has focus (and, in some browsers, a permission).
    if (navigator.clipboard && document.hasFocus()) navigator.clipboard.writeText(msg.text).catch(() => {});
  }

  // ----- pointer lock (/play) -----
  function locked() { return document.pointerLockElement === video; }
  function togglePointerLock() {
    if (locked()) document.exitPointerLock();
    else if (video.requestPointerLock) Promise.resolve(video.requestPointerLock()).catch(() => {});
  }
  if (playing) {
    $("lock").hidden = false;
    $("lock").addEventListener("click", togglePointerLock);
    document.addEventListener("pointerlockchange", () => {
      $("lock").textContent = locked() ? "Unlock pointer (Esc)" : "Lock pointer";
    });
  }
  // Where the pointer is on the picture (0..1), allowing for the letterbox of object-fit.
  function onPicture(e) {
    const r = video.getBoundingClientRect();
    const vw = video.videoWidth || r.width;
    const vh = video.videoHeight || r.height;
    const scale = Math.min(r.width / vw, r.height / vh);
    const w = vw * scale;
    const h = vh * scale;
    return { x: (e.clientX - r.left - (r.width - w) / 2) / w, y: (e.clientY - r.top - (r.height - h) / 2) / h };
  }
  function watching() { return window.howlWatch.input !== null; }
  window.addEventListener("keydown", (e) => {
    if (!watching() || !$("signin").hidden) return;
    if (playing && e.code === "KeyP" && e.ctrlKey && e.altKey) {
      // The page's own shortcut: not sent to the desktop.
      e.preventDefault();
      if (!e.repeat) togglePointerLock();
      return;
    }
    heldKeys.add(e.code);
    if (e.code === "KeyV" && (e.ctrlKey || e.metaKey) && !e.altKey && !e.repeat) {
      // Not prevented: the browser fires `paste` with the text, which is sent first.
      pendingPaste = { code: e.code, mods: mods(e) };
      return;
    }
    e.preventDefault();
    send("input", { k: "key", code: e.code, down: true, mods: mods(e) });
  });
  window.addEventListener("keyup", (e) => {
    if (!watching() || !$("signin").hidden) return;
    e.preventDefault();
    if (pendingPaste && pendingPaste.code === e.code) flushPaste();
    heldKeys.delete(e.code);
    send("input", { k: "key", code: e.code, down: false, mods: mods(e) });
  });
  video.addEventListener("pointermove", (e) => {
    // Locked: how far the mouse moved (it has no position), on the reliable channel since
    // every move counts.
    if (locked()) send("input", { k: "rel", dx: e.movementX, dy: e.movementY });
    else send("pointer", Object.assign({ k: "move" }, onPicture(e)));
  });
  video.addEventListener("pointerdown", (e) => {
    if (!locked()) send("pointer", Object.assign({ k: "move" }, onPicture(e)));
    heldButtons.add(e.button);
    send("input", { k: "button", button: e.button, down: true });
  });
  video.addEventListener("pointerup", (e) => {
    heldButtons.delete(e.button);
    send("input", { k: "button", button: e.button, down: false });
  });
  video.addEventListener("contextmenu", (e) => e.preventDefault());
  video.addEventListener("wheel", (e) => {
    e.preventDefault();
    // Pixels (Chromium: 100 per notch) or lines to 1/120 notch; positive = up / right.
    const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 120 : 1.2;
    send("input", { k: "wheel", dx: Math.round(e.deltaX * unit), dy: Math.round(-e.deltaY * unit) });
  }, { passive: false });
  window.addEventListener("paste", (e) => {
    // Not while the token form is up: a pasted token stays in the page.
    if (!watching() || !$("signin").hidden) return;
    e.preventDefault();
    const text = e.clipboardData && e.clipboardData.getData("text/plain");
    if (text && new TextEncoder().encode(text).length <= MAX_CLIPBOARD_BYTES) {
      send("input", { k: "clipboard", text });
    } else if (text) {
      status(`Paste not sent: more than ${MAX_CLIPBOARD_BYTES / 1024} KiB`);
    }
    flushPaste();
  });
  window.addEventListener("blur", releaseAll);
  document.addEventListener("visibilitychange", () => { if (document.hidden) releaseAll(); });

  async function errorText(r) {
    try { return (await r.json()).error || r.statusText; } catch (_) { return r.statusText; }
  }

  function askForToken(why) {
    status(why);
    $("signin").hidden = false;
    $("signin-token").focus();
  }

  // The WHEP endpoint: a lobby's (by id or name), or an app's (by id or title).
  async function endpoint() {
    const list = playing ? "/api/v1/apps" : "/api/v1/lobbies";
    let id = lobbyArg;
    if (!/^\d+$/.test(lobbyArg)) {
      const r = await fetch(list, { headers: { Authorization: `Bearer ${token}` } });
      if (!r.ok) throw Object.assign(new Error(await errorText(r)), { status: r.status });
      const found = (await r.json()).find((x) => (playing ? x.title : x.name) === lobbyArg);
      if (!found) throw new Error(`no ${playing ? "app" : "lobby"} named ${lobbyArg}`);
      id = String(found.id);
    }
    return `${list}/${encodeURIComponent(id)}/whep${playing ? location.search : ""}`;
  }

  // The STUN/TURN servers the operator configured (webrtc_ice_servers), so a browser behind a
  // NAT gathers reflexive and relayed candidates; the ICE-lite server learns them from this
  // browser's checks, so they need not be sent. None (or an unreachable list): host only.
  async function iceServers() {
    try {
      const r = await fetch("/api/v1/webrtc/ice-servers", { headers: { Authorization: `Bearer ${token}` } });
      return r.ok ? (await r.json()).ice_servers || [] : [];
    } catch (_) {
      return [];
    }
  }

  function leave() {
    releaseAll();
    window.howlWatch.input = null;
    window.howlWatch.pointer = null;
    const pc = window.howlWatch.pc;
    if (pc) pc.close();
    window.howlWatch.pc = null;
    if (resource) {
      fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` }, keepalive: true })
        .catch(() => {});
      resource = null;
      window.howlWatch.resource = null;
    }
  }

  function retry(why) {
    leave();
    clearTimeout(retryTimer);
    status(`${why}; retrying in ${(retryMs / 1000).toFixed(1)} s`);
    retryTimer = setTimeout(watch, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }

  // Resolution, frame rate, bitrate, round-trip time and loss, once a second.
  let last = null;
  async function showStats() {
    const pc = window.howlWatch.pc;
    if (!pc) return;
    let video = null;
    let rtt = null;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") video = s;
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime;
      }
    });
    if (!video) return;
    const now = { t: video.timestamp, bytes: video.bytesReceived || 0 };
    const kbps = last && now.t > last.t ? (8 * (now.bytes - last.bytes)) / (now.t - last.t) : 0;
    last = now;
    const lost = video.packetsLost || 0;
    const got = video.packetsReceived || 0;
    const loss = got + lost > 0 ? (100 * lost) / (got + lost) : 0;
    const parts = [
      `${video.frameWidth || 0}x${video.frameHeight || 0}`,
      `${Math.round(video.framesPerSecond || 0)} fps`,
      `${Math.round(kbps)} kbit/s`,
      rtt === null ? "RTT -" : `RTT ${Math.round(rtt * 1000)} ms`,
      `loss ${loss.toFixed(1)} %`,
    ];
    $("overlay").textContent = parts.join(" · ");
    $("overlay").hidden = false;
  }

  async function watch() {
    $("signin").hidden = true;
    status("Connecting…");
    let url;
    try {
      url = await endpoint();
    } catch (e) {
      if (e.status === 401) askForToken("That token was not accepted.");
      else status(e.message);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: await iceServers() });
    window.howlWatch.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    window.howlWatch.input = pc.createDataChannel("input", { ordered: true });
    window.howlWatch.input.onmessage = fromDesktop;
    // A new connection is a new viewer: its pads arrive anew.
    padsSent.clear();
    window.howlWatch.pointer = pc.createDataChannel("pointer", { ordered: false, maxRetransmits: 0 });
    const stream = new MediaStream();
    video.srcObject = stream;
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (window.howlWatch.pc !== pc) return;
      const s = pc.connectionState;
      if (s === "connected") {
        retryMs = RETRY_FIRST_MS;
        status("");
      } else if (s === "failed" || s === "disconnected" || s === "closed") {
        retry(`Connection ${s}`);
      } else {
        status(`Connection ${s}`);
      }
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    // The server is ICE-lite with a host candidate in its answer: it learns this browser's
    // address from its connectivity checks, so the offer needs no gathered candidates.
    let r;
    try {
      r = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
        body: offer.sdp,
      });
    } catch (e) {
      retry("The server did not answer");
      return;
    }
    if (r.status === 401) {
      pc.close();
      askForToken("That token was not accepted.");
      return;
    }
    if (r.status === 503) {
      // A busy server says when to come back (too many offers waiting to connect).
      const after = Number(r.headers.get("Retry-After"));
      if (after > 0) retryMs = Math.min(Math.max(retryMs, after * 1000), RETRY_MAX_MS);
      retry(`Server busy: ${await errorText(r)}`);
      return;
    }
    if (!r.ok) {
      pc.close();
      window.howlWatch.pc = null;
      status(`Cannot watch: ${await errorText(r)}`);
      return;
    }
    resource = r.headers.get("Location");
    window.howlWatch.resource = resource;
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    if (!statsTimer) statsTimer = setInterval(() => { showStats().catch(() => {}); }, 1000);
  }

  // Autoplay with sound needs a user gesture in most browsers: start muted, offer a click.
  $("unmute").hidden = false;
  $("unmute").addEventListener("click", () => {
    video.muted = false;
    video.play().catch(() => {});
    $("unmute").hidden = true;
  });

  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("signin-token").value.trim();
    $("signin-token").value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    watch();
  });

  window.addEventListener("pagehide", () => {
    clearTimeout(retryTimer);
    leave();
  });

  if (token) watch();
  else askForToken("Sign in with an API token to watch.");
})();
