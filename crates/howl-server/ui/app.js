// howl operator UI. No framework: a handful of lists, each fetched from the JSON API and
// reconciled into a table by key, so rows (and a half-typed PIN) survive refreshes.
//
// Safety rule for this file: data reaches the page only through textContent and attributes
// set with setAttribute/dataset, never through HTML parsing.
"use strict";

(() => {
  const TOKEN_KEY = "howl.token";
  const EVENTS_PATH = "/api/v1/events";
  // Counters are refreshed on this period even when the event stream is live.
  const STATUS_PERIOD_MS = 5000;
  // Without an event stream (older server), every list is polled on this period.
  const POLL_PERIOD_MS = 5000;
  // After a 404 on the event stream, try it again this rarely (the server may be upgraded).
  const EVENTS_RETRY_AFTER_404_MS = 60000;
  // Likewise for a list route the server lacks (workers on an older server).
  const MISSING_RETRY_MS = 60000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  // The server sends a keep-alive comment every 15 s; silence this long means a dead stream.
  const STREAM_IDLE_MS = 45000;
  const INFO_MESSAGE_MS = 6000;
  const MAX_MESSAGES = 5;

  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  // Bumped on sign-out so that loops started for an old token stop by themselves.
  let generation = 0;
  let streamAbort = null;
  let mode = "connecting";

  // ---------------------------------------------------------------- small helpers

  function el(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "text") e.textContent = v;
        else if (k === "class") e.className = v;
        else if (k === "testid") e.dataset.testid = v;
        else e.setAttribute(k, v);
      }
    }
    for (const c of children || []) e.append(c);
    return e;
  }

  function fmtDuration(secs) {
    if (secs == null || !isFinite(secs)) return "–";
    secs = Math.max(0, Math.floor(secs));
    if (secs < 60) return `${secs} s`;
    const m = Math.floor(secs / 60), s = secs % 60;
    if (m < 60) return `${m} m ${String(s).padStart(2, "0")} s`;
    const h = Math.floor(m / 60), mm = m % 60;
    if (h < 24) return `${h} h ${String(mm).padStart(2, "0")} m`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  function fmtCount(n) {
    return n == null ? "–" : Number(n).toLocaleString("en-US");
  }

  function fmtKiB(kb) {
    if (kb == null) return "–";
    if (kb < 1024) return `${kb} KiB`;
    if (kb < 1024 * 1024) return `${(kb / 1024).toFixed(1)} MiB`;
    return `${(kb / 1024 / 1024).toFixed(2)} GiB`;
  }

  function fpPrefix(fp) {
    return fp ? `${String(fp).slice(0, 16)}…` : "–";
  }

  function fmtDate(unix) {
    if (!unix) return "–";
    const d = new Date(unix * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  // ---------------------------------------------------------------- messages

  function showMessage(kind, text) {
    const box = $("messages");
    const close = el("button", { type: "button", class: "close", "aria-label": "Dismiss", text: "×" });
    const msg = el("div", { class: `message ${kind}`, testid: "message", role: kind === "error" ? "alert" : "status" },
      [el("span", { text }), close]);
    msg.dataset.kind = kind;
    close.addEventListener("click", () => msg.remove());
    box.prepend(msg);
    while (box.children.length > MAX_MESSAGES) box.lastElementChild.remove();
    if (kind !== "error") setTimeout(() => msg.remove(), INFO_MESSAGE_MS);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `cannot reach the server (${e.message})`);
    }
    if (resp.status === 401) {
      signOut("The server rejected the token. Sign in again.");
      throw new ApiError(401, "unauthorized");
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (!resp.ok) {
      const msg = data && typeof data === "object" && data.error ? data.error : `HTTP ${resp.status}`;
      throw new ApiError(resp.status, msg);
    }
    return data;
  }

  // Runs an operator action; an error goes to the message area with what was being done.
  async function act(what, fn) {
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) showMessage("error", `${what}: ${e.message}`);
    }
  }

  // ---------------------------------------------------------------- tables

  // Rows are keyed; an existing row only gets its cell texts updated, so focus, typed input
  // and buttons stay put while lists refresh under the operator's hands.
  function syncTable(name, items, spec) {
    const body = $(`${name}-body`);
    const seen = new Set();
    const now = performance.now();
    let prev = null;
    for (const item of items) {
      const key = String(spec.key(item));
      seen.add(key);
      let row = body.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
      if (!row) {
        row = el("tr", { testid: `${spec.rowId}-row` });
        row.dataset.key = key;
        for (const col of spec.columns) {
          const td = el("td", { class: col.num ? "num" : (col.class || "") });
          td.dataset.col = col.id;
          row.append(td);
        }
        if (spec.extra) {
          const td = el("td", { class: "extra" });
          td.dataset.col = "extra";
          spec.extra(td, item);
          row.append(td);
        }
        if (spec.actions) {
          const td = el("td", { class: "actions" });
          spec.actions(td, item);
          row.append(td);
        }
      }
      row._item = item;
      row._fetchedAt = now;
      spec.columns.forEach((col, i) => {
        const td = row.children[i];
        if (col.render) {
          col.render(td, item);
          return;
        }
        const text = col.age ? fmtDuration(col.value(item)) : String(col.value(item) ?? "–");
        if (td.textContent !== text) td.textContent = text;
        if (col.title) td.title = col.title(item) || "";
      });
      if (spec.update) spec.update(row, item);
      // Keep the server's order.
      if (prev ? prev.nextSibling !== row : body.firstChild !== row) {
        body.insertBefore(row, prev ? prev.nextSibling : body.firstChild);
      }
      prev = row;
    }
    for (const row of [...body.children]) {
      if (!seen.has(row.dataset.key)) row.remove();
    }
    const empty = document.querySelector(`[data-empty="${name}"]`);
    if (empty.dataset.usual) empty.textContent = empty.dataset.usual;
    empty.hidden = items.length > 0;
    const badge = document.querySelector(`[data-count="${name}"]`);
    if (badge) badge.textContent = items.length ? String(items.length) : "";
    tables[name] = spec;
  }
  const tables = {};

  // Ages (waiting time, uptime, heartbeat) tick locally between fetches.
  function tickAges() {
    const now = performance.now();
    for (const [name, spec] of Object.entries(tables)) {
      const ageCols = spec.columns.map((c, i) => [c, i]).filter(([c]) => c.age);
      if (!ageCols.length) continue;
      for (const row of $(`${name}-body`).children) {
        const elapsed = (now - row._fetchedAt) / 1000;
        for (const [col, i] of ageCols) {
          const base = col.value(row._item);
          if (base == null) continue;
          const v = col.age === "down" ? base - elapsed : base + elapsed;
          row.children[i].textContent = fmtDuration(v);
        }
      }
    }
  }

  function notAvailable(name, text) {
    $(`${name}-body`).replaceChildren();
    const empty = document.querySelector(`[data-empty="${name}"]`);
    if (!empty.dataset.usual) empty.dataset.usual = empty.textContent;
    empty.textContent = text;
    empty.hidden = false;
  }

  // ---------------------------------------------------------------- previews and graphs

  // A lobby's thumbnail is a live, muted, video-only WebRTC view of its producer through the
  // lobby's own WHEP endpoint (`?preview=true`), not a snapshot endpoint: the producer already
  // encodes for its viewers, so a preview is one more viewer of that encoder (the server
  // decodes and re-encodes nothing, and the lobby endpoint only joins a running producer, so
  // no worker is ever started for a preview), while a snapshot would need a decoder on the
  // server. It is never stale: when the decoded-frame count stops moving the picture is hidden
  // ("no picture") instead of showing its last frame. A session shows its lobby's thumbnail
  // from the same connection. Lobbies that stop when their audience leaves get none (a
  // preview would keep them running).
  const PREVIEW_MAX = 6;
  // A preview that failed (a browser that cannot reach the WebRTC port, a busy server) is
  // tried again after this, doubling up to the maximum, so an unreachable port costs the
  // server one short-lived viewer per lobby now and then, not a stream of them.
  const PREVIEW_RETRY_MIN_MS = 10000;
  const PREVIEW_RETRY_MAX_MS = 300000;
  // How often the previews' decoded frames are looked at (a thumbnail without new frames
  // since the last look is hidden).
  const PREVIEW_CHECK_MS = 2000;
  // Graph points: one per sessions listing (the page's periodic refresh, every 5 s, and
  // the listings events bring); ten minutes of them at most.
  const GRAPH_POINTS = 120;
  const SPARK_W = 64;
  const SPARK_H = 11;
  const GRAPHS = [
    { id: "kbps", label: "bitrate (kbit/s)", color: "#3157d5" },
    { id: "fps", label: "frames sent per second", color: "#1e8a4c" },
    { id: "loss", label: "frames dropped (%)", color: "#c62828" },
  ];
  // lobby id -> { pc, stream, resource, frames, live }
  const previews = new Map();
  const previewRetryAt = new Map();
  const previewRetryMs = new Map();
  // session id -> { t, frames, dropped, bytes, kbps: [], fps: [], loss: [] }
  const graphs = new Map();
  let iceServerList = null;
  // Tests and curious operators.
  window.howlUi = { previews, graphs };

  function previewRefusal(l) {
    if (!l.worker_pid) return "not running";
    if (l.stop_when_everyone_leaves) return "no preview: it stops when its viewers leave";
    return "";
  }

  function thumbnail(lobbyId) {
    const video = el("video", { class: "thumb", muted: "", playsinline: "", autoplay: "" });
    video.muted = true;
    video.hidden = true;
    const none = el("span", { class: "thumb-none muted", text: "no picture" });
    // Clicking a lobby's thumbnail opens it in the watch page.
    const a = el("a", { class: "thumb-link", testid: "thumb", target: "_blank", rel: "noopener" }, [video, none]);
    if (lobbyId != null) a.setAttribute("href", `/watch/${encodeURIComponent(lobbyId)}`);
    return a;
  }

  function attachThumbnail(cell, lobbyId, why) {
    const a = cell && cell.querySelector("a.thumb-link");
    if (!a) return;
    const video = a.querySelector("video");
    const none = a.querySelector(".thumb-none");
    const p = lobbyId == null ? null : previews.get(lobbyId);
    if (lobbyId != null) a.setAttribute("href", `/watch/${encodeURIComponent(lobbyId)}`);
    else a.removeAttribute("href");
    if (p && p.live) {
      if (video.srcObject !== p.stream) video.srcObject = p.stream;
      if (video.paused) video.play().catch(() => {});
      video.hidden = false;
      none.hidden = true;
      a.title = lobbyId == null ? "" : "open the watch page";
    } else {
      video.hidden = true;
      if (video.srcObject) video.srcObject = null;
      // Short in the cell (the row must stay narrow), the reason in the tooltip.
      none.textContent = p ? "no picture" : "–";
      a.title = why || (p ? "no new frames: the picture is not shown" : "");
      none.hidden = false;
    }
  }

  function attachAllThumbnails() {
    for (const [name, spec] of Object.entries(tables)) {
      if (name !== "lobbies" && name !== "sessions") continue;
      for (const row of $(`${name}-body`).children) spec.update(row, row._item);
    }
  }

  async function iceServers() {
    if (iceServerList) return iceServerList;
    try {
      const r = await api("GET", "/api/v1/webrtc/ice-servers");
      iceServerList = (r && r.ice_servers) || [];
    } catch (_) {
      iceServerList = [];
    }
    return iceServerList;
  }

  function dropPreview(id, retry) {
    const p = previews.get(id);
    if (!p) return;
    previews.delete(id);
    if (p.pc) p.pc.close();
    if (p.resource) {
      fetch(p.resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` }, keepalive: true })
        .catch(() => {});
    }
    if (retry) {
      const ms = previewRetryMs.get(id) || PREVIEW_RETRY_MIN_MS;
      previewRetryAt.set(id, performance.now() + ms);
      previewRetryMs.set(id, Math.min(ms * 2, PREVIEW_RETRY_MAX_MS));
    }
  }

  async function openPreview(id) {
    const entry = { pc: null, stream: new MediaStream(), resource: null, frames: 0, live: false };
    previews.set(id, entry);
    try {
      const pc = new RTCPeerConnection({ iceServers: await iceServers() });
      entry.pc = pc;
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.ontrack = (e) => entry.stream.addTrack(e.track);
      pc.onconnectionstatechange = () => {
        if (["failed", "disconnected", "closed"].includes(pc.connectionState) && previews.get(id) === entry) {
          dropPreview(id, true);
        }
      };
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const r = await fetch(`/api/v1/lobbies/${encodeURIComponent(id)}/whep?preview=true`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
        body: offer.sdp,
      });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      entry.resource = r.headers.get("Location");
      if (previews.get(id) !== entry) {
        // Dropped while the offer was out: leave at once.
        dropPreview(id, false);
        return;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    } catch (_) {
      if (previews.get(id) === entry) dropPreview(id, true);
      else if (entry.pc) entry.pc.close();
    }
  }

  // Keeps one preview per running lobby that may have one (at most PREVIEW_MAX), and closes
  // the previews of lobbies that went.
  function syncPreviews(lobbies) {
    if (typeof RTCPeerConnection === "undefined") return;
    const want = new Set(lobbies.filter((l) => !previewRefusal(l)).slice(0, PREVIEW_MAX).map((l) => l.id));
    for (const id of [...previews.keys()]) if (!want.has(id)) dropPreview(id, false);
    const now = performance.now();
    for (const id of want) {
      if (previews.has(id) || (previewRetryAt.get(id) || 0) > now) continue;
      openPreview(id);
    }
  }

  function dropAllPreviews() {
    for (const id of [...previews.keys()]) dropPreview(id, false);
    previewRetryAt.clear();
    previewRetryMs.clear();
  }

  // Whether each preview decoded a frame since the last look: only those show a picture.
  async function checkPreviews() {
    for (const [id, p] of previews) {
      if (!p.pc) continue;
      let frames = 0;
      try {
        (await p.pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
        });
      } catch (_) { /* closed meanwhile */ }
      p.live = frames > p.frames;
      p.frames = frames;
      if (p.live) previewRetryMs.delete(id);
    }
    attachAllThumbnails();
  }

  // Per-session rates from two listings in a row: bitrate, frames per second, and the share
  // of frames dropped (not sent: lagging, waiting for a keyframe).
  function recordSamples(sessions) {
    const now = performance.now();
    const seen = new Set();
    for (const s of sessions) {
      seen.add(s.id);
      let g = graphs.get(s.id);
      if (!g) {
        g = { t: now, frames: s.frames_sent, dropped: s.frames_dropped, bytes: s.bytes_sent || 0, kbps: [], fps: [], loss: [] };
        graphs.set(s.id, g);
        continue;
      }
      const dt = (now - g.t) / 1000;
      if (dt < 0.5) continue;
      const sent = Math.max(0, s.frames_sent - g.frames);
      const dropped = Math.max(0, s.frames_dropped - g.dropped);
      const push = (k, v) => {
        g[k].push(v);
        if (g[k].length > GRAPH_POINTS) g[k].shift();
      };
      push("kbps", (8 * Math.max(0, (s.bytes_sent || 0) - g.bytes)) / 1000 / dt);
      push("fps", sent / dt);
      push("loss", sent + dropped > 0 ? (100 * dropped) / (sent + dropped) : 0);
      Object.assign(g, { t: now, frames: s.frames_sent, dropped: s.frames_dropped, bytes: s.bytes_sent || 0 });
    }
    for (const id of [...graphs.keys()]) if (!seen.has(id)) graphs.delete(id);
  }

  function drawGraphs(cell, id) {
    const g = graphs.get(id);
    if (!cell || !g) return;
    for (const spec of GRAPHS) {
      const c = cell.querySelector(`canvas[data-testid="graph-${spec.id}"]`);
      const pts = g[spec.id];
      if (!c) continue;
      const last = pts.length ? pts[pts.length - 1] : null;
      c.title = `${spec.label}: ${last == null ? "–" : last.toFixed(spec.id === "loss" ? 1 : 0)}`;
      c.dataset.points = String(pts.length);
      const ctx = c.getContext("2d");
      ctx.clearRect(0, 0, c.width, c.height);
      if (pts.length < 2) continue;
      // Loss is drawn against 0..100 %, the others against their own peak.
      const top = spec.id === "loss" ? 100 : Math.max(...pts, 1);
      ctx.strokeStyle = spec.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      pts.forEach((v, i) => {
        const x = (i / (GRAPH_POINTS - 1)) * (c.width - 2) + 1;
        const y = c.height - 1 - (v / top) * (c.height - 2);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
  }

  function previewTick(gen) {
    if (gen !== generation) return;
    if (!document.hidden) checkPreviews().catch(() => {});
    setTimeout(() => previewTick(gen), PREVIEW_CHECK_MS);
  }

  // ---------------------------------------------------------------- lists

  // Paired names by fingerprint, from the last client list, and the last items of every list.
  const clientNames = new Map();
  const missingUntil = {};
  const lastItems = {};

  // "control", or "view (12 dropped)": a view-only session's input that never reached the desktop.
  function permissionText(s) {
    const p = s.permission || "control";
    return s.input_dropped ? `${p} (${fmtCount(s.input_dropped)} dropped)` : p;
  }

  const SPECS = {
    sessions: {
      rowId: "session",
      key: (s) => s.id,
      columns: [
        { id: "client", value: (s) => s.client_name || clientNames.get(s.client) || fpPrefix(s.client),
          title: (s) => s.client },
        { id: "app", value: (s) => s.app },
        { id: "resolution", value: (s) => `${s.width}×${s.height}` },
        { id: "fps", num: true, value: (s) => s.fps },
        { id: "codec", value: (s) => String(s.codec || "").toUpperCase() },
        { id: "bitrate", num: true,
          value: (s) => (s.bitrate_kbps == null ? "–" : `${(s.bitrate_kbps / 1000).toFixed(1)} Mb/s`) },
        { id: "frames_sent", num: true, value: (s) => fmtCount(s.frames_sent) },
        { id: "frames_dropped", num: true, value: (s) => fmtCount(s.frames_dropped) },
        { id: "permission", value: (s) => permissionText(s),
          title: (s) => (s.permission_set ? "set for this session" : "from its lobby's rules") },
        { id: "uptime", num: true, age: "up", value: (s) => s.uptime_secs },
      ],
      // The thumbnail of the lobby it watches (private streams have no WHEP endpoint) and
      // its graphs.
      extra: (td) => {
        td.append(thumbnail(), el("div", { class: "graphs" }, GRAPHS.map((g) => el("canvas", {
          class: "spark", width: String(SPARK_W), height: String(SPARK_H), title: g.label, testid: `graph-${g.id}`,
        }))));
      },
      // The toggle reads the row's latest item when clicked and shows what it will do.
      update: (row, s) => {
        const b = row.querySelector('[data-testid="session-permission"]');
        if (b) b.textContent = s.permission === "view" ? "Give control" : "View only";
        const cell = row.querySelector('td[data-col="extra"]');
        attachThumbnail(cell, s.lobby_id, s.lobby_id == null ? "private stream: no preview" : "");
        drawGraphs(cell, s.id);
      },
      actions: (td, s) => {
        const p = el("button", { type: "button", class: "small", testid: "session-permission" });
        p.addEventListener("click", () => act("Change permission", async () => {
          const cur = td.parentElement._item;
          const next = cur.permission === "view" ? "control" : "view";
          p.disabled = true;
          try {
            await api("PUT", `/api/v1/sessions/${encodeURIComponent(cur.id)}/permission`, { permission: next });
            showMessage("info", next === "view" ? "The session may only view now." : "The session controls now.");
          } finally {
            p.disabled = false;
          }
          refresh("sessions");
        }));
        td.append(p);
        const b = el("button", { type: "button", class: "danger small", testid: "session-stop", text: "Stop" });
        b.addEventListener("click", () => act("Stop session", async () => {
          b.disabled = true;
          try {
            await api("DELETE", `/api/v1/sessions/${encodeURIComponent(s.id)}`);
            showMessage("info", "Session stopped.");
          } finally {
            b.disabled = false;
          }
          refresh("sessions", "lobbies", "workers", "status");
        }));
        td.append(b);
      },
    },
    lobbies: {
      rowId: "lobby",
      key: (l) => l.id,
      columns: [
        { id: "name", value: (l) => l.name },
        { id: "app", value: (l) => l.app },
        { id: "resolution", value: (l) => `${l.width}×${l.height}` },
        { id: "fps", num: true, value: (l) => l.fps },
        { id: "codec", value: (l) => String(l.codec || "").toUpperCase() },
        { id: "viewers", num: true, value: (l) => l.viewers },
        { id: "worker", num: true, value: (l) => l.worker_pid },
        { id: "joiners", value: (l) => l.viewer_permission || "control" },
      ],
      extra: (td, l) => td.append(thumbnail(l.id)),
      update: (row, l) => {
        const b = row.querySelector('[data-testid="lobby-permission"]');
        if (b) b.textContent = l.viewer_permission === "view" ? "Joiners control" : "Joiners view";
        attachThumbnail(row.querySelector('td[data-col="extra"]'), l.id, previewRefusal(l));
      },
      actions: (td, l) => {
        const p = el("button", { type: "button", class: "small", testid: "lobby-permission" });
        p.addEventListener("click", () => act("Change lobby permission", async () => {
          const cur = td.parentElement._item;
          const next = cur.viewer_permission === "view" ? "control" : "view";
          await api("PUT", `/api/v1/lobbies/${encodeURIComponent(cur.id)}/permission`, { viewer_permission: next });
          showMessage("info", `Clients joining "${cur.name}" ${next === "view" ? "only view" : "control"} now.`);
          refresh("lobbies", "sessions");
        }));
        td.append(p);
        const b = el("button", { type: "button", class: "danger small", testid: "lobby-stop", text: "Stop" });
        b.addEventListener("click", () => act("Stop lobby", async () => {
          if (!confirm(`Stop lobby "${l.name}"? Everyone watching it is disconnected.`)) return;
          await api("DELETE", `/api/v1/lobbies/${encodeURIComponent(l.id)}`);
          showMessage("info", `Lobby "${l.name}" stopped.`);
          refresh("lobbies", "sessions", "workers", "status");
        }));
        td.append(b);
      },
    },
    pending: {
      rowId: "pending",
      key: (p) => p.id,
      columns: [
        { id: "device", value: (p) => p.device_name || "(unnamed)" },
        { id: "requester", value: (p) => p.requester },
        { id: "fingerprint", class: "mono", value: (p) => fpPrefix(p.fingerprint), title: (p) => p.fingerprint },
        { id: "waiting", num: true, age: "up", value: (p) => p.waiting_secs },
        { id: "expires", num: true, age: "down", value: (p) => p.expires_in_secs },
      ],
      actions: (td, p) => {
        const input = el("input", {
          type: "text", inputmode: "numeric", pattern: "[0-9]{4}", maxlength: "4", required: "",
          placeholder: "PIN", autocomplete: "off", class: "pin", testid: "pending-pin",
          "aria-label": `PIN for ${p.device_name || "client"}`,
        });
        const b = el("button", { type: "submit", class: "primary small", testid: "pending-pair", text: "Pair" });
        const form = el("form", { class: "pin-form" }, [input, b]);
        form.addEventListener("submit", (ev) => {
          ev.preventDefault();
          act("Pair", async () => {
            b.disabled = true;
            try {
              await api("POST", "/api/v1/pairing/pin", { pin: input.value.trim(), client: String(p.id) });
              input.value = "";
              showMessage("info", `PIN sent to ${p.device_name || "the client"}.`);
            } finally {
              b.disabled = false;
            }
            refresh("pending", "clients");
          });
        });
        td.append(form);
      },
    },
    clients: {
      rowId: "client",
      key: (c) => c.fingerprint,
      columns: [
        { id: "name", value: (c) => c.name || "(unnamed)" },
        { id: "fingerprint", class: "mono", value: (c) => fpPrefix(c.fingerprint), title: (c) => c.fingerprint },
        { id: "paired", value: (c) => fmtDate(c.paired_at_unix) },
      ],
      actions: (td, c) => {
        const b = el("button", { type: "button", class: "danger small", testid: "client-unpair", text: "Unpair" });
        b.addEventListener("click", () => act("Unpair", async () => {
          if (!confirm(`Unpair "${c.name || fpPrefix(c.fingerprint)}"? It must pair again to stream.`)) return;
          await api("DELETE", `/api/v1/clients/${encodeURIComponent(c.fingerprint)}`);
          showMessage("info", "Client unpaired.");
          refresh("clients", "sessions");
        }));
        td.append(b);
      },
    },
    workers: {
      rowId: "worker",
      key: (w) => w.pid,
      columns: [
        { id: "pid", num: true, value: (w) => w.pid },
        { id: "app", value: (w) => w.app },
        { id: "state", value: (w) => w.state },
        { id: "heartbeat", num: true, age: "up",
          value: (w) => (w.last_heartbeat_ms_ago == null ? null : w.last_heartbeat_ms_ago / 1000) },
        { id: "rss", num: true, value: (w) => fmtKiB(w.rss_kb) },
        { id: "cpu", num: true, value: (w) => (w.cpu_seconds == null ? "–" : `${Number(w.cpu_seconds).toFixed(1)} s`) },
        { id: "uptime", num: true, age: "up", value: (w) => w.uptime_secs },
      ],
    },
    nodes: {
      rowId: "node",
      key: (n) => n.name,
      columns: [
        { id: "name", value: (n) => n.name },
        { id: "state", value: (n) => n.state },
        { id: "producers", render: (td, n) => renderUse(td, n.producers, n.max_producers, "node-producers") },
        { id: "encoder_sessions",
          render: (td, n) => renderUse(td, n.encoder_sessions, n.max_encoder_sessions, "node-encoder-sessions") },
        { id: "workers", num: true, value: (n) => n.workers },
        { id: "gpus", num: true, value: (n) => n.gpus },
        { id: "cores", num: true, value: (n) => n.cores || "–" },
        { id: "encoders", value: (n) => (n.encoders || []).join(", ") || "–" },
        { id: "labels", value: (n) => Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "–" },
        { id: "address", class: "mono", value: (n) => n.address || "–" },
      ],
      update: (row, n) => {
        row.dataset.state = n.state;
        const d = row.querySelector('[data-testid="node-drain"]');
        if (d) d.disabled = n.state !== "ready";
      },
      actions: (td, n) => {
        const d = el("button", { type: "button", class: "small", testid: "node-drain", text: "Drain" });
        d.addEventListener("click", () => act("Drain node", async () => {
          if (!confirm(`Drain node "${n.name}"? It takes no new stream; running ones go on to their end.`)) return;
          await api("POST", `/api/v1/nodes/${encodeURIComponent(n.name)}/drain`);
          showMessage("info", `Node "${n.name}" is draining.`);
          refresh("nodes");
        }));
        td.append(d);
        // The built-in node cannot be removed (only drained, or switched off in the config).
        if (n.name === "local") return;
        const r = el("button", { type: "button", class: "danger small", testid: "node-remove", text: "Remove" });
        r.addEventListener("click", () => act("Remove node", async () => {
          if (!confirm(`Remove node "${n.name}"? Its streams end, and it needs a new join token to come back.`)) return;
          await api("DELETE", `/api/v1/nodes/${encodeURIComponent(n.name)}`);
          showMessage("info", `Node "${n.name}" removed.`);
          refresh("nodes", "sessions", "lobbies", "workers", "status");
        }));
        td.append(r);
      },
    },
  };

  // A use-against-limit bar (a <meter>: no inline style, which the page's CSP forbids) and
  // its figures; `max` 0 is unlimited, shown as an empty bar and "no limit".
  function renderUse(td, used, max, testid) {
    let meter = td.querySelector("meter");
    let label = td.querySelector(".use-label");
    if (!meter) {
      meter = el("meter", { min: "0", testid });
      label = el("span", { class: "use-label" });
      td.replaceChildren(meter, label);
    }
    const limited = Number(max) > 0;
    meter.max = limited ? Number(max) : 1;
    meter.value = limited ? Math.min(Number(used), Number(max)) : 0;
    meter.high = limited ? Math.max(Number(max) - 0.5, 0) : 2;
    meter.dataset.used = String(used);
    meter.dataset.max = String(max);
    label.textContent = limited ? `${used} / ${max}` : `${used} (no limit)`;
  }

  const PATHS = {
    sessions: "/api/v1/sessions",
    lobbies: "/api/v1/lobbies",
    pending: "/api/v1/pairing/pending",
    clients: "/api/v1/clients",
    workers: "/api/v1/workers",
    nodes: "/api/v1/nodes?disconnected=true",
  };

  function renderStatus(st) {
    const e = st.engine || {};
    $("server-version").textContent = st.version ? `v${st.version}` : "";
    $("stat-sessions").textContent = fmtCount(e.sessions);
    $("stat-lobbies").textContent = fmtCount(e.lobbies);
    $("stat-workers").textContent = e.workers_starting
      ? `${fmtCount(e.workers)} (+${e.workers_starting})` : fmtCount(e.workers);
    $("stat-viewers").textContent = fmtCount(e.viewers);
    $("stat-frames-sent").textContent = fmtCount(e.frames_sent);
    $("stat-frames-dropped").textContent = fmtCount(e.frames_dropped);
  }

  async function load(name) {
    if (name === "status") {
      if (missingUntil.status && performance.now() < missingUntil.status) return;
      try {
        renderStatus(await api("GET", "/api/v1/status"));
      } catch (e) {
        // A tenant token may not read the server-wide counters; the lists still work.
        if (e.status !== 403) throw e;
        missingUntil.status = performance.now() + MISSING_RETRY_MS;
      }
      return;
    }
    if (name === "apps") {
      const apps = await api("GET", "/api/v1/apps").catch(() => null);
      if (Array.isArray(apps)) {
        $("app-names").replaceChildren(...apps.map((a) => el("option", { value: a.name || a.title || "" })));
      }
      return;
    }
    // A list this server lacks (404) is asked for again only now and then.
    if (missingUntil[name] && performance.now() < missingUntil[name]) return;
    try {
      let items = await api("GET", PATHS[name]);
      missingUntil[name] = 0;
      if (name === "sessions") {
        // The thumbnails of this page (and of other operators' pages) are viewers too, but
        // not sessions anyone runs: they are not listed.
        items = items.filter((x) => !String(x.client).startsWith("preview:"));
        recordSamples(items);
      }
      if (name === "lobbies") syncPreviews(items);
      lastItems[name] = items;
      syncTable(name, items, SPECS[name]);
      if (name === "clients") {
        // Sessions name their client by fingerprint; show the paired name where known.
        clientNames.clear();
        for (const c of items) if (c.name) clientNames.set(c.fingerprint, c.name);
        if (lastItems.sessions) syncTable("sessions", lastItems.sessions, SPECS.sessions);
      }
    } catch (e) {
      if (e.status === 403) {
        // A tenant token: this list is the operator's only. Say so once, ask rarely.
        missingUntil[name] = performance.now() + MISSING_RETRY_MS;
        notAvailable(name, "Only the operator's (admin) token can see this list.");
        return;
      }
      if (e.status === 404 && name === "workers") {
        missingUntil[name] = performance.now() + MISSING_RETRY_MS;
        notAvailable("workers", "Worker details are not available on this server.");
        return;
      }
      if (e.status === 404 && name === "nodes") {
        missingUntil[name] = performance.now() + MISSING_RETRY_MS;
        notAvailable("nodes", "Nodes are not available on this server.");
        return;
      }
      throw e;
    }
  }

  // One fetch per list at a time; asks that arrive meanwhile collapse into one more fetch.
  const inflight = {};
  const again = {};
  const lastError = {};
  function refresh(...names) {
    const gen = generation;
    for (const name of names) {
      if (inflight[name]) {
        again[name] = true;
        continue;
      }
      inflight[name] = true;
      load(name).then(() => {
        lastError[name] = null;
      }, (e) => {
        // One message per failing list, not one every period.
        if (e.status !== 401 && gen === generation && lastError[name] !== e.message) {
          showMessage("error", `Loading ${name}: ${e.message}`);
        }
        lastError[name] = e.message;
      }).finally(() => {
        inflight[name] = false;
        if (again[name] && gen === generation) {
          again[name] = false;
          refresh(name);
        }
      });
    }
  }
  const ALL = ["status", "pending", "sessions", "lobbies", "clients", "workers", "nodes"];
  const refreshAll = () => refresh(...ALL);

  // Which lists an event can change. Unknown types refetch everything.
  const AFFECTS = {
    pairing_requested: ["pending"],
    pairing_completed: ["pending", "clients"],
    pairing_failed: ["pending"],
    client_unpaired: ["clients", "sessions"],
    client_renamed: ["clients", "sessions"],
    session_started: ["sessions", "lobbies", "workers", "nodes", "status"],
    session_ended: ["sessions", "lobbies", "workers", "nodes", "status"],
    permission_changed: ["sessions"],
    lobby_created: ["lobbies", "workers", "nodes", "status"],
    lobby_stopped: ["lobbies", "sessions", "workers", "nodes", "status"],
    worker_started: ["workers", "lobbies", "nodes", "status"],
    worker_died: ["workers", "lobbies", "sessions", "nodes", "status"],
    node_joined: ["nodes"],
    node_lost: ["nodes", "sessions", "lobbies", "workers", "status"],
    node_drained: ["nodes"],
  };

  function onEvent(type, data) {
    if (type === "hello" || type === "lagged" || !AFFECTS[type]) {
      refreshAll();
    } else {
      refresh(...AFFECTS[type]);
    }
    if (type === "pairing_failed") {
      showMessage("error", `Pairing failed${data && data.reason ? `: ${data.reason}` : ""}.`);
    } else if (type === "worker_died") {
      showMessage("error", `A worker died${data && data.reason ? `: ${data.reason}` : ""}.`);
    }
  }

  // ---------------------------------------------------------------- live events

  function setMode(m, detail) {
    mode = m;
    const pill = $("conn");
    pill.dataset.state = m;
    pill.textContent = { live: "live", polling: "polling", reconnecting: "reconnecting", connecting: "connecting" }[m] || m;
    pill.title = detail || "";
  }

  // EventSource cannot send an Authorization header, so the stream is read with fetch.
  async function readEvents(gen) {
    const ctrl = new AbortController();
    streamAbort = ctrl;
    let idle = null;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => ctrl.abort(), STREAM_IDLE_MS);
    };
    armIdle();
    try {
      const resp = await fetch(EVENTS_PATH, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
        cache: "no-store",
        signal: ctrl.signal,
      });
      if (resp.status === 401) {
        signOut("The server rejected the token. Sign in again.");
        return "stop";
      }
      if (resp.status === 404) return "absent";
      if (!resp.ok || !resp.body) return "failed";
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== generation) return "failed";
        armIdle();
        buf += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue; // keep-alive comment
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") type = val;
            else if (field === "data") data.push(val);
          }
          if (!data.length && type === "message") continue;
          let parsed = null;
          try { parsed = JSON.parse(data.join("\n")); } catch { /* type alone is enough */ }
          if (type === "hello") setMode("live");
          onEvent(type, parsed);
        }
      }
    } catch {
      return "failed";
    } finally {
      clearTimeout(idle);
      if (streamAbort === ctrl) streamAbort = null;
    }
  }

  async function eventLoop(gen) {
    let backoff = BACKOFF_MIN_MS;
    setMode("connecting");
    // The mode shown stays what the last attempt found until a `hello` says "live".
    while (gen === generation) {
      const started = performance.now();
      const outcome = await readEvents(gen);
      if (gen !== generation || outcome === "stop") return;
      let wait;
      if (outcome === "absent") {
        setMode("polling", "This server has no event stream; lists are polled.");
        wait = EVENTS_RETRY_AFTER_404_MS;
      } else {
        // The stream dropped: whatever happened meanwhile is unknown, so fetch everything.
        setMode("reconnecting");
        refreshAll();
        if (performance.now() - started > BACKOFF_MAX_MS) backoff = BACKOFF_MIN_MS;
        wait = backoff;
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  function periodic(gen) {
    if (gen !== generation) return;
    // Live: events say when rows come and go, but counters (frames, heartbeats, RSS) move
    // without events, so the lists that carry them are refetched too.
    if (mode === "live") refresh("status", "sessions", "lobbies", "workers", "nodes");
    else refreshAll();
    setTimeout(() => periodic(gen), mode === "live" ? STATUS_PERIOD_MS : POLL_PERIOD_MS);
  }

  // ---------------------------------------------------------------- tabs

  const TABS = ["sessions", "lobbies", "pairing", "clients", "workers", "nodes"];

  function showTab(name) {
    if (!TABS.includes(name)) name = "sessions";
    for (const b of document.querySelectorAll("[data-tab]")) {
      const on = b.dataset.tab === name;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.classList.toggle("active", on);
    }
    for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== name;
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  }

  // ---------------------------------------------------------------- sign-in

  function signOut(reason) {
    dropAllPreviews();
    generation += 1;
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    if (streamAbort) streamAbort.abort();
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = reason || "";
    $("signin-token").value = "";
    $("signin-token").focus();
  }

  function start() {
    generation += 1;
    const gen = generation;
    $("signin").hidden = true;
    $("app").hidden = false;
    $("messages").replaceChildren();
    for (const k of Object.keys(lastError)) delete lastError[k];
    mode = "connecting";
    showTab(location.hash.slice(1));
    refreshAll();
    refresh("apps");
    eventLoop(gen);
    setTimeout(() => periodic(gen), STATUS_PERIOD_MS);
    setTimeout(() => previewTick(gen), PREVIEW_CHECK_MS);
  }

  async function signIn(ev) {
    ev.preventDefault();
    const candidate = $("signin-token").value.trim();
    if (!candidate) return;
    $("signin-submit").disabled = true;
    $("signin-error").textContent = "";
    try {
      // /server answers every valid token (admin or tenant); /status is the admin's only.
      const resp = await fetch("/api/v1/server", {
        headers: { Authorization: `Bearer ${candidate}` },
        cache: "no-store",
      });
      if (resp.status === 401) {
        $("signin-error").textContent = "That token was not accepted.";
        return;
      }
      if (!resp.ok) {
        let msg = `HTTP ${resp.status}`;
        try { msg = (await resp.json()).error || msg; } catch { /* keep the status */ }
        $("signin-error").textContent = `The server answered: ${msg}`;
        return;
      }
      token = candidate;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("signin-token").value = "";
      start();
    } catch (e) {
      $("signin-error").textContent = `Cannot reach the server (${e.message}).`;
    } finally {
      $("signin-submit").disabled = false;
    }
  }

  async function createLobby(ev) {
    ev.preventDefault();
    const f = ev.target;
    const body = {
      name: f.elements.name.value.trim(),
      app: f.elements.app.value.trim(),
      width: Number(f.elements.width.value),
      height: Number(f.elements.height.value),
      fps: Number(f.elements.fps.value),
      viewer_permission: f.elements.viewer_permission.value,
    };
    await act("Create lobby", async () => {
      const lobby = await api("POST", "/api/v1/lobbies", body);
      showMessage("info", `Lobby "${(lobby && lobby.name) || body.name}" created.`);
      f.elements.name.value = "";
      refresh("lobbies", "workers", "status");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut(""));
    $("lobby-form").addEventListener("submit", createLobby);
    for (const b of document.querySelectorAll("[data-tab]")) {
      b.addEventListener("click", () => showTab(b.dataset.tab));
    }
    window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
    setInterval(tickAges, 1000);
    // Leaving the page ends the previews at once instead of by their deadline.
    window.addEventListener("pagehide", dropAllPreviews);
    if (token) start();
    else $("signin-token").focus();
  });
})();
