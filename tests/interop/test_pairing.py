"""Issue 3 acceptance 1 and 2: the real client (moonlight-common-c's pairing, as ported by
moonlight-python) pairs with howl, lists apps, stays paired across restarts, and unpairs."""

from __future__ import annotations

import re

import subprocess

import pytest

from conftest import (BackgroundPairing, howl_bin, https_get, make_client, pair_with_api,
                      server_info, submit_pin, xml_text)

PIN = "4271"


def test_serverinfo_over_http_is_what_clients_need(howl, tmp_path):
    client = make_client(tmp_path / "c")
    info = server_info(client, howl.http_port)
    assert info.app_version == "7.1.431.-1"
    assert info.gfe_version == "3.23.0.74"
    assert info.https_port == howl.https_port
    assert info.server_codec_mode_support & 0x1  # H.264
    assert info.unique_id
    assert not info.paired
    assert info.state.endswith("_SERVER_FREE")


def test_pair_via_api_then_list_apps(howl, tmp_path):
    client = make_client(tmp_path / "c")
    info, request, error = pair_with_api(howl, client, PIN)
    assert error is None, repr(error)
    assert len(request["fingerprint"]) == 64
    # Paired: the HTTPS serverinfo says so for this certificate.
    xml = https_get(client, info, "serverinfo")
    assert xml_text(xml, "PairStatus") == "1"
    names = [a.name for a in client.apps()]
    assert "Test Pattern" in names
    apps = client.apps()
    assert all(a.id > 0 for a in apps)
    status, clients = howl.api("GET", "/api/v1/clients")
    assert status == 200 and [c["fingerprint"] for c in clients] == [request["fingerprint"]]
    # The PIN never shows up in the server's log or in the API.
    # Whole-number matches only: a timestamp such as 1795427153 may contain the digits.
    pin_re = re.compile(rf"(?<!\d){PIN}(?!\d)")
    assert not pin_re.search(howl.log())
    assert not pin_re.search(str(clients))


def test_wrong_pin_fails_and_stores_nothing(howl, tmp_path):
    from moonlight_python.exceptions import PairingError
    client = make_client(tmp_path / "c")
    info, _, error = pair_with_api(howl, client, PIN, submitted="9999")
    assert isinstance(error, PairingError), repr(error)
    status, clients = howl.api("GET", "/api/v1/clients")
    assert status == 200 and clients == []
    from moonlight_python.exceptions import HttpResponseError
    with pytest.raises(HttpResponseError) as e:
        https_get(client, info, "applist")
    assert e.value.status_code == 401
    # A failed pairing leaves no state behind: the same client can pair right away.
    info, _, error = pair_with_api(howl, client, PIN)
    assert error is None, repr(error)


def test_paired_client_survives_restart_and_unpair_works(howl_factory, tmp_path):
    from moonlight_python.exceptions import HttpResponseError
    h = howl_factory()
    client = make_client(tmp_path / "c")
    info, request, error = pair_with_api(h, client, PIN)
    assert error is None, repr(error)
    fp = request["fingerprint"]
    uniqueid = info.unique_id
    assert h.stop() == 0

    h2 = howl_factory(state_dir=h.state_dir, ports=(h.http_port, h.https_port, h.api_port))
    # A new client object from the same config dir: same certificate, nothing else kept.
    client2 = make_client(tmp_path / "c")
    info2 = server_info(client2, h2.http_port)
    assert info2.unique_id == uniqueid, "host identity must be stable across restarts"
    assert xml_text(https_get(client2, info2, "serverinfo"), "PairStatus") == "1"
    assert "Test Pattern" in [a.name for a in client2.apps(info2)]

    status, _ = h2.api("DELETE", f"/api/v1/clients/{fp}")
    assert status == 204
    with pytest.raises(HttpResponseError) as e:
        https_get(client2, info2, "applist")
    assert e.value.status_code == 401
    status, clients = h2.api("GET", "/api/v1/clients")
    assert clients == []


def test_client_can_unpair_itself_over_https(howl, tmp_path):
    from moonlight_python.exceptions import HttpResponseError
    client = make_client(tmp_path / "c")
    info, _, error = pair_with_api(howl, client, PIN)
    assert error is None, repr(error)
    https_get(client, info, "unpair")
    with pytest.raises(HttpResponseError):
        https_get(client, info, "applist")


def test_pair_via_cli(howl, tmp_path):
    client = make_client(tmp_path / "c")
    info = server_info(client, howl.http_port)
    pairing = BackgroundPairing(client, info, PIN)
    pairing.request(howl.api)
    out = subprocess.run(
        [howl_bin(), "pin", PIN, "--state-dir", str(howl.state_dir),
         "--api", f"127.0.0.1:{howl.api_port}"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    pairing.succeeded()
    assert "Test Pattern" in [a.name for a in client.apps()]


def test_cli_reports_errors_clearly(howl):
    out = subprocess.run(
        [howl_bin(), "pin", "1234", "--state-dir", str(howl.state_dir),
         "--api", f"127.0.0.1:{howl.api_port}"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "no client is waiting" in out.stderr
    out = subprocess.run(
        [howl_bin(), "pin", "12", "--state-dir", str(howl.state_dir),
         "--api", f"127.0.0.1:{howl.api_port}"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "4 digits" in out.stderr


def test_second_concurrent_pairing_from_same_requester_is_refused(howl, tmp_path):
    """moonlight-python always sends uniqueid 0123456789ABCDEF, so two clients on one address
    are indistinguishable in steps 2-4: the second must be refused, never mixed in."""
    from moonlight_python.exceptions import PairingAlreadyInProgress
    a = make_client(tmp_path / "a")
    b = make_client(tmp_path / "b")
    ia = server_info(a, howl.http_port)
    pa = BackgroundPairing(a, ia, PIN)
    request = pa.request(howl.api)
    ib = server_info(b, howl.http_port)
    pb = BackgroundPairing(b, ib, "1111")
    assert isinstance(pb.finish(30), PairingAlreadyInProgress), repr(pb.error)
    # b's attempt left no request of its own: a is the only one waiting.
    assert [r["id"] for r in howl.api("GET", "/api/v1/pairing/pending")[1]] == [request["id"]]
    status, body = submit_pin(howl.api, PIN, request)
    assert status == 200, body
    pa.succeeded()
    status, clients = howl.api("GET", "/api/v1/clients")
    assert [c["fingerprint"] for c in clients] == [pa.fingerprint]


def test_api_requires_token(howl):
    for method, path, body in [("GET", "/api/v1/pairing/pending", None),
                               ("POST", "/api/v1/pairing/pin", {"pin": "1234"}),
                               ("GET", "/api/v1/clients", None)]:
        status, _ = howl.api(method, path, body, token=None)
        assert status == 401
        status, _ = howl.api(method, path, body, token="wrong-token-wrong-token")
        assert status == 401
    status, body = howl.api("POST", "/api/v1/pairing/pin", {"pin": "12345"})
    assert status == 400, body
    status, body = howl.api("POST", "/api/v1/pairing/pin", {"nope": 1})
    assert status == 400, body
