"use strict";
// /watch/<lobby>: one lobby in a browser over WebRTC. The page offers to receive video and
// audio, POSTs the offer to the lobby's WHEP endpoint with the API token the operator UI
// keeps in sessionStorage (or one typed here), and shows what comes back. Leaving the page
// DELETEs the WHEP resource so the viewer ends at once instead of by its deadline.
(() => {
  const TOKEN_KEY = "howl.token";
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const status = (text) => { $("status").textContent = text; };
  const lobbyArg = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  let resource = null;
  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  // Tests and curious operators: the live connection and its WHEP resource.
  window.howlWatch = { pc: null, resource: null };

  async function errorText(r) {
    try { return (await r.json()).error || r.statusText; } catch (_) { return r.statusText; }
  }

  function askForToken(why) {
    status(why);
    $("signin").hidden = false;
    $("signin-token").focus();
  }

  async function lobbyId() {
    if (/^\d+$/.test(lobbyArg)) return lobbyArg;
    const r = await fetch("/api/v1/lobbies", { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) throw Object.assign(new Error(await errorText(r)), { status: r.status });
    const l = (await r.json()).find((x) => x.name === lobbyArg);
    if (!l) throw new Error(`no lobby named ${lobbyArg}`);
    return String(l.id);
  }

  async function watch() {
    $("signin").hidden = true;
    status("Connecting…");
    let id;
    try {
      id = await lobbyId();
    } catch (e) {
      if (e.status === 401) askForToken("That token was not accepted.");
      else status(e.message);
      return;
    }
    const pc = new RTCPeerConnection();
    window.howlWatch.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    video.srcObject = stream;
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      status(s === "connected" ? "" : `Connection ${s}`);
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    // The server is ICE-lite with a host candidate in its answer: it learns this browser's
    // address from its connectivity checks, so the offer needs no gathered candidates.
    const r = await fetch(`/api/v1/lobbies/${encodeURIComponent(id)}/whep`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
      body: offer.sdp,
    });
    if (r.status === 401) {
      pc.close();
      askForToken("That token was not accepted.");
      return;
    }
    if (!r.ok) {
      pc.close();
      status(`Cannot watch: ${await errorText(r)}`);
      return;
    }
    resource = r.headers.get("Location");
    window.howlWatch.resource = resource;
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
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
    if (resource) {
      fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` }, keepalive: true });
      resource = null;
    }
  });

  if (token) watch();
  else askForToken("Sign in with an API token to watch.");
})();
