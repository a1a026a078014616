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


def start(settings, *args, env=None):
    "Start `mlops-nb serve ARGS` on a free port of 127.0.0.1 and wait until it is ready: (base url, process)."
    port = free_port()
    e = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled", **(env or {})}
    if not {"--grpc-port", "--no-grpc"} & set(args): args = (*args, "--grpc-port", str(free_port()))   # not port + 1: maybe taken
    p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--port", str(port), *args], env=e, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if http("GET", url + "/readyz")[0] == 200: return url, p
        except OSError: time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()
    p.kill(); raise AssertionError("the service never became ready")


def stop(p) -> str:
    "SIGTERM, as a process manager stops a service; returns its stderr."
    p.terminate()
    _, e = p.communicate(timeout=60)
    assert p.returncode in (0, -15) and "Traceback" not in e, e      # uvicorn shuts down cleanly, then re-raises SIGTERM
    return e


def own_log(tmp_path, settings, **serve) -> Path:
    "A settings file like `settings` with its own prediction log under `tmp_path` and `[serve]` values changed."
    import configparser
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    cp["paths"]["predictions"] = str(tmp_path / "predictions.db")
    if not cp.has_section("serve"): cp.add_section("serve")
    for k, v in serve.items(): cp["serve"][k] = str(v)
    with open(tmp_path / "settings.ini", "w") as f: cp.write(f)
    return tmp_path / "settings.ini"


@pytest.fixture(scope="module")
def served(smoke):
    "A running `mlops-nb serve` on the smoke run's model: (base url, process, settings)."
    settings, _, rec = smoke
    url, p = start(settings)
    yield url, p, settings
    stop(p)


def offline(settings, n=16):
    "The test split's first rows and the bundle's own probabilities for them (ONNX Runtime, no service)."
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.build.data import load_dataset
    s = load_settings(settings)
    reg = registry_for(s)
    v = reg.get("digits-cnn@staging")
    b = reg.load("digits-cnn@staging")
    ds_digest = b.lineage["dataset"]
    from mlops_nb.core.store import Store
    x, _ = load_dataset(Store(s.store).path(ds_digest), Store(s.store)).part("test")
    x = np.asarray(x[:n])
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
    # tritonclient's defaults: the binary tensor data extension both ways
    inp = tc.InferInput("image", list(x.shape), "UINT8"); inp.set_data_from_numpy(x)
    r = c.infer("digits-cnn", [inp], outputs=[tc.InferRequestedOutput("probabilities"), tc.InferRequestedOutput("label")])
    assert np.allclose(r.as_numpy("probabilities"), want, atol=1e-5)
    assert [l.decode() for l in r.as_numpy("label")] == [b.labels[i] for i in want.argmax(1)]
    r = c.infer("digits-cnn", [inp])                                   # no outputs named: all of them
    assert np.allclose(r.as_numpy("probabilities"), want, atol=1e-5)
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    # OIP request parameters and an X-Tags header are logged as tags
    c.infer("digits-cnn", [inp], outputs=outs, request_id="oip-8", parameters={"camera": "5"}, headers={"X-Tags": "site=north"})
    from mlops_nb.core.config import load_settings
    from mlops_nb.core.predlog import predictions
    time.sleep(0.5)                                              # the log's writer commits every 50 ms
    rows = [r for r in predictions(load_settings(settings).predictions) if r["request_id"] == "oip-8"]
    assert len(rows) == len(x) and rows[0]["tags"] == {"camera": "5", "site": "north"}


def test_the_service_never_imports_torch(served):
    url, p, settings = served
    maps = Path(f"/proc/{p.pid}/maps").read_text()
    assert "libtorch" not in maps and "onnxruntime" in maps


def test_a_tampered_bundle_refuses_to_start(tmp_path, smoke):
    settings, _, rec = smoke
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
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


def test_every_acknowledged_prediction_is_logged_by_a_clean_stop(tmp_path, smoke):
    "N requests answered, SIGTERM at once (the writer commits only every 10 s here): N rows, feedback joined, tags kept."
    import http.client
    from mlops_nb.core.predlog import predictions, counts
    settings, _, _ = smoke
    s2 = own_log(tmp_path, settings, flush_ms=10_000)
    v, b, x, want = offline(settings, n=8)
    url, p = start(s2)
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    n = 300
    for i in range(n):
        conn.request("POST", "/v1/predict", json.dumps({"inputs": [x[i % len(x)].tolist()]}),
                     {"content-type": "application/json", "x-request-id": f"r{i}", "x-tags": f"camera={i % 3}"})
        r = conn.getresponse(); assert r.status == 200; r.read()
    conn.request("POST", "/v1/feedback", json.dumps([{"request_id": "r0", "label": b.labels[0]}, {"request_id": "r1", "label": "9"}]),
                 {"content-type": "application/json"})
    r = conn.getresponse(); assert r.status == 200, r.read(); r.read()
    conn.close()
    assert counts(tmp_path / "predictions.db")["predictions"] == 0          # all still queued
    stop(p)
    rows = predictions(tmp_path / "predictions.db")
    assert len(rows) == n and {r["request_id"] for r in rows} == {f"r{i}" for i in range(n)}
    byid = {r["request_id"]: r for r in rows}
    assert byid["r0"]["true_label"] == b.labels[0] and byid["r1"]["true_label"] == "9" and byid["r2"]["true_label"] is None
    assert byid["r4"]["tags"] == {"camera": "1"} and byid["r4"]["digest"] == v["bundle"]
    assert np.allclose(byid["r5"]["probabilities"], want[5], atol=1e-5)


def test_workers_share_the_log_and_the_metrics_and_the_key_guards_feedback(tmp_path, smoke):
    settings, _, _ = smoke
    s2 = own_log(tmp_path, settings)
    key = "k3y-" + os.urandom(8).hex()
    v, b, x, want = offline(settings, n=4)
    url, p = start(s2, "--workers", "2", env={"MLOPS_NB_API_KEY": key})
    n = 40
    for i in range(n):
        st, _, _ = http("POST", url + "/v1/predict", {"inputs": [x[i % 4].tolist()]}, {"x-request-id": f"w{i}"})
        assert st == 200
    fb = [{"request_id": f"w{i}", "label": b.labels[0]} for i in range(n)]
    assert http("POST", url + "/v1/feedback", fb)[0] == 401
    assert http("POST", url + "/v1/feedback", fb, {"authorization": "Bearer wrong"})[0] == 401
    st, _, body = http("POST", url + "/v1/feedback", fb, {"authorization": f"Bearer {key}"})
    assert st == 200 and body == {"accepted": n}, body          # ids answered by either worker are known
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r: text = r.read().decode()
    line = next(l for l in text.splitlines() if l.startswith('mlops_nb_requests_total{route="/v1/predict",status="200"}'))
    assert float(line.split()[-1]) == n                          # summed over both workers
    assert 'mlops_nb_rejected_total{reason="unauthorized",route="/v1/feedback"} 2.0' in text
    err = stop(p)
    from mlops_nb.core.predlog import predictions
    rows = predictions(tmp_path / "predictions.db")
    assert len(rows) == n and all(r["true_label"] == b.labels[0] for r in rows)
    assert key not in err and key.encode() not in (tmp_path / "predictions.db").read_bytes()


def test_predict_offline_agrees_with_the_bundle(tmp_path, smoke):
    "`mlops-nb predict` on PNG files, a folder and a .npy: the bundle's own labels and probabilities; CSV and Parquet."
    import csv, io
    from PIL import Image
    settings, _, _ = smoke
    v, b, x, want = offline(settings, n=6)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for i in range(3): Image.fromarray(x[i, 0]).save(tmp_path / "imgs" / "sub" / f"{i}.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    np.save(tmp_path / "rows.npy", x[3:])
    p = cli("predict", "digits-cnn@staging", str(tmp_path / "imgs"), str(tmp_path / "rows.npy"), settings=settings)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["broken.png", "0.png", "1.png", "2.png", "rows.npy[0]", "rows.npy[1]", "rows.npy[2]"]
    assert "corrupt" in rows[0]["error"] and "1 unreadable" in p.stderr
    got = np.array([[float(r[f"p_{l}"]) for l in b.labels] for r in rows[1:]])
    assert np.allclose(got, want, atol=1e-5) and [r["label"] for r in rows[1:]] == [b.labels[i] for i in want.argmax(1)]
    p = cli("predict", f"digits-cnn@{v['version']}", str(tmp_path / "rows.npy"), "--out", str(tmp_path / "o.parquet"), settings=settings)
    assert p.returncode == 0, p.stderr
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "o.parquet")
    assert np.allclose(np.array(t.column("probabilities").to_pylist()), want[3:], atol=1e-5)
    for args, says in [(["digits-cnn", str(tmp_path / "rows.npy")], "NAME@ALIAS"), (["digits-cnn@staging", str(tmp_path / "nope")], "nope"),
                       (["digits-cnn@staging", str(tmp_path / "rows.npy"), "--out", "x.txt"], ".csv or .parquet")]:
        p = cli("predict", *args, settings=settings)
        assert p.returncode != 0 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_predictions_command_shows_and_exports_the_log(served, tmp_path):
    url, p, settings = served
    http("POST", url + "/v1/predict", {"inputs": [[0] * 64]}, {"x-request-id": "cli-1", "x-tags": "camera=<b>9</b>"})
    time.sleep(0.5)
    p = cli("predictions", "--limit", "500", "--json", settings=settings)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(l) for l in p.stdout.splitlines()]
    assert any(r["request_id"] == "cli-1" and r["tags"] == {"camera": "<b>9</b>"} for r in rows)
    p = cli("predictions", "--since", "1h", settings=settings)
    assert p.returncode == 0 and p.stdout.startswith("time") and "cli-1" in p.stdout, p.stderr
    p = cli("predictions", "export", "--parquet", str(tmp_path / "pq"), settings=settings)
    days = {r["time"][:10] for r in rows}                                # one partition per UTC day (a run may cross midnight)
    assert p.returncode == 0 and f"wrote {len(days)} day(s)" in p.stderr, p.stderr
    import pyarrow.dataset as pds
    assert pds.dataset(tmp_path / "pq", partitioning="hive").count_rows() == len(rows)
    p = cli("predictions", "--since", "yesterday", settings=settings)
    assert p.returncode == 2 and "not a time" in p.stderr


def test_the_load_bench_runs(smoke, tmp_path):
    "A quick smoke of bench/serve.py (1 s wrk runs): every figure measured, the service answered without errors."
    settings, _, _ = smoke
    out = tmp_path / "bench.json"
    p = subprocess.run([str(BIN / "python"), str(Path(__file__).parents[1] / "bench" / "serve.py"), "--quick", "--settings",
                        str(settings), "--json", str(out)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "WANDB_MODE": "disabled"})
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(out.read_text())
    for k in ("floor_rps", "predict_rps", "infer_rps", "batch512_rps", "bare1_rows_s", "bare512_rows_s"): assert r[k] > 0, k
    assert 0 < r["start_s"] < 30 and r["predict_p99"] >= r["predict_p50"] > 0
    assert "req/s" in p.stdout


def test_the_start_says_what_the_log_keeps_and_warns_when_retraining_would_starve():
    "The startup lines name the share of raw inputs the log keeps for this model's input size; with retraining on and "
    "few inputs kept, a note says how to keep more; with an archive, where it goes (no query string: it may carry secrets) "
    "and as which replica."
    from types import SimpleNamespace as NS
    from mlops_nb.deploy.serve import _say_serving
    from mlops_nb.core.config import SERVE_DEFAULTS, GOVERN_DEFAULTS
    def said(shape, log_inputs, retrain, archive=None):
        s = NS(serve={**SERVE_DEFAULTS, "log_inputs": log_inputs, "replica": "cam-1"}, govern={**GOVERN_DEFAULTS, "retrain": retrain},
               predictions="/tmp/p.db", archive=archive)
        r = NS(primary=NS(name="cam", version=2, digest="sha256:" + "0" * 64, shape=shape), canary=None, shadow=None)
        lines = []
        _say_serving(s, r, False, None, "127.0.0.1", 8000, lines.append)
        return "\n".join(lines)
    assert "monitoring summary and every raw input" in said((1, 8, 8), "auto", "approve")
    out = said((3, 224, 224), "auto", "approve")
    assert "and 1 raw input in 2,352" in out and "set [serve] log_inputs = all" in out
    assert "note:" not in said((3, 224, 224), "auto", "off") and "no raw input" in said((3, 64, 64), "none", "off")
    assert "archiving" not in out
    assert "archiving the log to s3://fleet/logs every 900 s as replica cam-1" in said((1, 8, 8), "auto", "off", "s3://fleet/logs?x=1")
