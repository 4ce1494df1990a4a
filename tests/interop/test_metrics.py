"""Issue 6: `GET /metrics` (Prometheus/OpenMetrics exposition) while the real Moonlight client
streams. Every scrape is validated with the reference parsers of the Python Prometheus client
(the strict OpenMetrics one and the classic 0.0.4 text one), so a malformed line fails here
rather than in somebody's Prometheus."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.openmetrics import parser as om_parser
from prometheus_client import parser as text_parser

from conftest import start_streaming, stop_client, wait_until


def scrape(h, token="default"):
    """Returns (status, content type, body) of GET /metrics."""
    req = urllib.request.Request(f"http://127.0.0.1:{h.api_port}/metrics")
    if token == "default":
        token = h.token
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def families(h):
    """Scrapes and parses; returns {family name: family} from the strict OpenMetrics parser."""
    status, ctype, body = scrape(h)
    assert status == 200, body
    assert ctype.startswith("application/openmetrics-text"), ctype
    assert body.endswith("# EOF\n"), body[-200:]
    parsed = {f.name: f for f in om_parser.text_string_to_metric_families(body)}
    # The classic text parser (what older tooling uses) must accept it too.
    classic = {f.name for f in text_parser.text_string_to_metric_families(body)}
    assert "howl_sessions" in classic, sorted(classic)
    return parsed


def sample(fams, family, name=None, **labels):
    """The value of the one sample of `family` named `name` whose labels include `labels`."""
    name = name or family
    hits = [s.value for s in fams[family].samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (family, name, labels, fams[family].samples)
    return hits[0]


def test_metrics_need_the_token(howl):
    status, _, body = scrape(howl, token=None)
    assert status == 401, body
    status, _, body = scrape(howl, token="wrong")
    assert status == 401, body
    fams = families(howl)
    assert sample(fams, "howl_sessions") == 0
    for name in ("howl_frames_sent", "howl_frames_dropped", "howl_bytes_sent",
                 "howl_sessions_ended", "howl_connections_accepted", "howl_connections_open",
                 "howl_tls_handshake_failures", "howl_deadline_closes", "howl_enet_connects",
                 "howl_pairing_attempts", "howl_tls_handshake_seconds",
                 "howl_http_request_seconds", "howl_max_video_queue_depth", "howl_workers"):
        assert name in fams, (name, sorted(fams))
    # This very scrape is served by the api listener, which counts its own connections.
    assert sample(fams, "howl_connections_accepted", "howl_connections_accepted_total",
                  listener="api") >= 1


def test_metrics_during_a_real_stream(howl, tmp_path):
    p = start_streaming(howl, tmp_path / "c", "--frames", 30, "--wait-termination", 30)
    try:
        status, sessions = howl.api("GET", "/api/v1/sessions")
        assert status == 200 and len(sessions) == 1, sessions
        s = sessions[0]
        labels = {"session": str(s["id"]), "client": s["client"][:16], "app": s["app"]}

        first = families(howl)
        after = howl.api("GET", "/api/v1/sessions")[1][0]
        assert sample(first, "howl_sessions") == 1
        sent1 = sample(first, "howl_session_frames_sent", "howl_session_frames_sent_total",
                       **labels)
        assert s["frames_sent"] <= sent1 <= after["frames_sent"], (s, sent1, after)
        # The session's drop counter is the one the API shows (read before and after).
        dropped = sample(first, "howl_session_frames_dropped",
                         "howl_session_frames_dropped_total", **labels)
        assert s["frames_dropped"] <= dropped <= after["frames_dropped"], (s, dropped, after)
        assert sample(first, "howl_frames_sent", "howl_frames_sent_total") >= sent1
        assert sample(first, "howl_bytes_sent", "howl_bytes_sent_total") > 0
        # The client paired and launched over HTTPS: handshakes and requests were timed.
        assert sample(first, "howl_tls_handshake_seconds", "howl_tls_handshake_seconds_count",
                      listener="nvhttps") > 0
        assert sample(first, "howl_http_request_seconds", "howl_http_request_seconds_count",
                      listener="nvhttps") > 0
        assert sample(first, "howl_connections_accepted", "howl_connections_accepted_total",
                      listener="nvhttps") > 0
        assert sample(first, "howl_enet_connects", "howl_enet_connects_total") >= 1

        # The stream goes on while the client waits: the counter must grow between scrapes.
        def grew():
            return sample(families(howl), "howl_session_frames_sent",
                          "howl_session_frames_sent_total", **labels) > sent1
        assert wait_until(grew, 10), howl.log()[-3000:]
    finally:
        stop_client(p)
