"""`mlops-nb serve` as a client meets it: a real server on 127.0.0.1, our routes with plain HTTP, the Open Inference
Protocol with tritonclient (an OIP client library used unchanged), the same predictions as the bundle offline."""
import json, os, socket, subprocess, time, urllib.error, urllib.request
from pathlib import Path
import numpy as np
import pytest
from conftest import BIN, cli, make_workbook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    "(status, headers, parsed JSON) for a request to the service."
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, dict(e.headers), json.loads(e.read())


@pytest.fixture(scope="module")
def served(smoke):
    "A running `mlops-nb serve` on the smoke run's model: (base url, process, settings, model name)."
    settings, _, rec = smoke
    port = free_port()
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if http("GET", url + "/readyz")[0] == 200: break
        except OSError: time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()
    else: raise AssertionError("the service never became ready")
    yield url, p, settings
    p.terminate(); p.wait(timeout=30)


def offline(settings, n=16):
    "The test split's first rows and the bundle's own probabilities for them (ONNX Runtime, no service)."
    from mlops_nb.config import load_settings
    from mlops_nb.registry import registry_for
    from mlops_nb.data import load_dataset
    s = load_settings(settings)
    reg = registry_for(s)
    v = reg.get("digits-cnn@staging")
    b = reg.load("digits-cnn@staging")
    ds_digest = b.lineage["dataset"]
    from mlops_nb.store import Store
    x, _ = load_dataset(Store(s.store).path(ds_digest)).part("test")
    z = b.predict_logits(x[:n]); p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    return v, b, x[:n], p


def test_our_routes(served):
    url, p, settings = served
    v, b, x, want = offline(settings)
    st, h, body = http("POST", url + "/v1/predict", {"inputs": x.tolist()}, {"x-request-id": "cam3-0001"})
    assert st == 200 and h["x-request-id"] == "cam3-0001" and body["request_id"] == "cam3-0001"
    assert body["model"] == {"name": "digits-cnn", "version": v["version"], "digest": v["bundle"]}
    got = np.array([r["probabilities"] for r in body["predictions"]])
    assert np.allclose(got, want, atol=1e-5)
    assert [r["label"] for r in body["predictions"]] == [b.labels[i] for i in want.argmax(1)]
    st, _, m = http("GET", url + "/v1/model")
    assert st == 200 and m["digest"] == v["bundle"] and m["labels"] == b.labels and m["run_id"] == v["run_id"]
    assert http("GET", url + "/healthz")[0] == 200
    st, _, e = http("POST", url + "/v1/predict", {"inputs": [[1, 2, 3]]})
    assert st == 400 and "shape [1, 8, 8]" in e["error"]


def test_open_inference_protocol_with_tritonclient(served):
    import tritonclient.http as tc
    url, p, settings = served
    v, b, x, want = offline(settings)
    c = tc.InferenceServerClient(url.removeprefix("http://"))
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("digits-cnn") and c.is_model_ready("digits-cnn", str(v["version"]))
    meta = c.get_model_metadata("digits-cnn")
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 1, 8, 8]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}
    inp = tc.InferInput("image", list(x.shape), "UINT8"); inp.set_data_from_numpy(x, binary_data=False)
    outs = [tc.InferRequestedOutput("probabilities", binary_data=False), tc.InferRequestedOutput("label", binary_data=False)]
    r = c.infer("digits-cnn", [inp], model_version=str(v["version"]), outputs=outs, request_id="oip-7")
    assert r.get_response()["id"] == "oip-7" and r.get_response()["model_version"] == str(v["version"])
    assert np.allclose(r.as_numpy("probabilities"), want, atol=1e-5)
    assert [l.decode() if isinstance(l, bytes) else l for l in r.as_numpy("label")] == [b.labels[i] for i in want.argmax(1)]
    with pytest.raises(Exception, match="unknown model"):
        c.infer("no-such-model", [inp], outputs=outs)


def test_the_service_never_imports_torch(served):
    url, p, settings = served
    maps = Path(f"/proc/{p.pid}/maps").read_text()
    assert "libtorch" not in maps and "onnxruntime" in maps


def test_a_tampered_bundle_refuses_to_start(tmp_path, smoke):
    settings, _, rec = smoke
    from mlops_nb.config import load_settings
    from mlops_nb.registry import registry_for
    s = load_settings(settings)
    v = registry_for(s).get("digits-cnn@staging")
    import shutil
    wb = tmp_path / "wb"
    shutil.copytree(Path(settings).parent, wb, ignore=shutil.ignore_patterns("runs", "wandb*"))
    s2 = make_workbook(wb)
    d = v["bundle"].split(":")[1]
    obj = next((wb / "store").rglob(d))
    obj.chmod(0o644); obj.write_bytes(b"not the bundle")
    p = cli("serve", "--port", str(free_port()), settings=s2, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "digits-cnn" in p.stderr, p.stderr
