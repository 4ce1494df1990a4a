"""Issue 19, acceptance 6: the Kubernetes manifests (deploy/kubernetes/) render with `kubectl
kustomize` and validate against a current Kubernetes schema; and they say what howl really
accepts: every HOWL_* variable they set is one that `howl serve` / `howl node` take (a renamed
setting fails here, not in someone's cluster), and the Services publish exactly the ports the
configuration makes howl listen on."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, free_port, howl_bin

KUSTOMIZE_DIRS = ["base", "overlays/nvidia-gpu", "overlays/dri"]
DEPLOY = REPO / "deploy" / "kubernetes"


def kubectl() -> str:
    k = shutil.which("kubectl")
    if k is None:
        pytest.fail("kubectl is missing: scripts/common.sh installs Debian's kubernetes-client")
    return k


def render(d: str) -> list[dict]:
    r = subprocess.run([kubectl(), "kustomize", str(DEPLOY / d)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"kubectl kustomize {d} failed:\n{r.stderr}"
    return [doc for doc in yaml.safe_load_all(r.stdout) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in docs]}")


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("d", KUSTOMIZE_DIRS)
def test_manifests_render_and_validate_against_current_schema(d, tmp_path):
    import kubernetes_validate

    docs = render(d)
    kinds = sorted({x["kind"] for x in docs})
    assert kinds == ["ConfigMap", "DaemonSet", "Deployment", "Namespace", "NetworkPolicy",
                     "PersistentVolumeClaim", "Service"], kinds
    version = kubernetes_validate.latest_version()
    for doc in docs:
        # strict: an unknown field (a typo, or one this Kubernetes no longer has) is an error.
        kubernetes_validate.validate(doc, version, strict=True)
    # ... and the validator does reject what is wrong, so passing above means something.
    bad = find(docs, "Deployment", "howl-control-plane")
    bad["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def test_control_plane_shape():
    docs = render("base")
    dep = find(docs, "Deployment", "howl-control-plane")
    spec = dep["spec"]
    # One owner of the state directory: never two replicas, never two at once in a rollout.
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claim = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert mounts["state"] == "/var/lib/howl" and claim["state"] == "howl-state"
    find(docs, "PersistentVolumeClaim", "howl-state")
    assert pod["securityContext"]["runAsNonRoot"] is True

    svc = find(docs, "Service", "howl-clients")
    published = {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]}
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    env = env_of(c)
    first_rtsp = int(env.get("HOWL_RTSP_PORT", {}).get("value", 48010))
    count = int(env["HOWL_RTSP_PORT_COUNT"]["value"])
    expected = {(47984, "TCP"), (47989, "TCP"), (47998, "UDP"), (47999, "UDP"), (48000, "UDP"),
                (8554, "TCP"), (8555, "UDP")}
    expected |= {(first_rtsp + i, "TCP") for i in range(count)}
    assert published == expected, f"clients Service ports differ: {published ^ expected}"

    ds = find(docs, "DaemonSet", "howl-node")
    npod = ds["spec"]["template"]["spec"]
    assert npod["nodeSelector"] == {"howl.dev/media-node": "true"}
    secrets = [v["secret"]["secretName"] for v in npod["volumes"] if "secret" in v]
    assert secrets == ["howl-node-join"]
    policies = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert policies == {"howl-node", "howl-control-plane"}


def test_control_plane_environment_is_accepted_by_howl_serve(howl_factory):
    """Starts `howl serve` with the Deployment's HOWL_* variables (addresses moved to free
    loopback ports): howl refuses to start on a variable that is none of its settings."""
    c = find(render("base"), "Deployment", "howl-control-plane")["spec"]["template"]["spec"]
    env = {}
    for name, e in env_of(c["containers"][0]).items():
        value = e.get("value", "192.0.2.10")  # valueFrom: the ConfigMap's placeholder address
        if name.endswith("_BIND"):
            value = f"127.0.0.1:{free_port()}"
        env[name] = value
    env["HOWL_WEBRTC_BIND"] = "127.0.0.1:0"
    env["HOWL_WEBRTC_CANDIDATE_IP"] = "127.0.0.1"
    env["HOWL_RTSP_PORT"] = "0"
    h = howl_factory(env=env)
    status, body = h.api("GET", "/api/v1/status")
    assert status == 200, body


def test_node_environment_is_accepted_by_howl_node():
    ds = find(render("base"), "DaemonSet", "howl-node")
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][-2:] == ["/usr/bin/howl", "node"]
    r = subprocess.run([howl_bin(), "node", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # clap wraps long help lines anywhere, "[env:" and the name included.
    help_text = " ".join(r.stdout.split())
    for name in env_of(c):
        assert f"[env: {name}=" in help_text, f"`howl node` takes no {name}:\n{r.stdout}"
