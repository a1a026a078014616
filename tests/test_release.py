"""Release as a team meets it: a reviewer approves the QA report of a version whose application test passed,
`release` puts it in production through the gate, and a running service swaps to it under load without a failed
request; rollback swaps back; a canary takes its share of requests by id; a shadow scores every request, logged
only; `predictions compare` sets the versions side by side."""
import configparser, json, threading, time
from http.client import HTTPConnection
from pathlib import Path
import numpy as np
from conftest import cli, variant_bundle
from test_serve import http, start, stop


def test_approving_the_pipelines_qa_report(smoke, tmp_path):
    "On a copy of the smoke workbook's registry (its runs and store shared, read only): an approval here would change what "
    "other modules read from the session's registry (tests/test_workflows.py expects the gate to ask for one)."
    import sqlite3
    from mlops_nb.core.config import load_settings
    src = load_settings(smoke[0]).registry
    settings = own_registry(smoke, tmp_path)
    with sqlite3.connect(src) as db: db.execute("VACUUM INTO ?", (str(tmp_path / "registry.db"),))   # WAL included
    from mlops_nb.build.registry import registry_for
    reg = registry_for(load_settings(settings))
    v = reg.get("digits-cnn@staging")["version"]
    p = cli("approve", f"digits-cnn@{v}", settings=settings)
    assert p.returncode == 2 and "--why" in p.stderr                       # argparse: the reason is required
    p = cli("approve", f"digits-cnn@{v}", "--why", "read the QA report: replay exact, p99 fine", settings=settings)
    assert p.returncode == 0, p.stderr
    ref = json.loads(reg.version("digits-cnn", v)["apptest_report"])        # what tested it last: a run's stage, or the command
    if "run" in ref:
        run = json.loads((load_settings(settings).runs / ref["run"] / "run.json").read_text())
        stage = next(s for s in run["stages"] if s["name"] == "apptest")
        report = load_settings(settings).runs / ref["run"] / stage["notebook"]  # the executed stage notebook is the QA report
    else:
        from mlops_nb.core.store import sha256_bytes
        report = Path(ref["path"]); stage = {"notebook_digest": sha256_bytes(report.read_bytes())}
    assert f"report  {report}" in p.stdout
    a, problem = reg.approval("digits-cnn", v)
    assert a is not None and a["why"].startswith("read the QA report") and a["bundle"] == reg.version("digits-cnn", v)["bundle"], problem
    assert a["report_digest"] == stage["notebook_digest"]                  # the digest the run recorded for that notebook
    shown = cli("registry", "show", f"digits-cnn@{v}", settings=settings).stdout
    assert "approval approved by" in shown


def own_registry(smoke, tmp: Path) -> Path:
    "Settings sharing the smoke workbook's store and runs, with a registry and prediction log of their own."
    settings = Path(smoke[0])
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    root = settings.parent
    for k in ("store", "runs", "pipelines", "wandb_dir", "wandb_data_dir", "lineage"):
        if cp.has_option("paths", k): cp["paths"][k] = str((root / cp["paths"][k]).resolve())
    cp["paths"]["registry"], cp["paths"]["predictions"] = str(tmp / "registry.db"), str(tmp / "predictions.db")
    cp["serve"]["follow_ms"] = "100"
    cp["gates"]["min_accuracy"], cp["gates"]["max_recall_gap"] = "0.5", "1"     # the smoke model is a one-epoch model
    with open(tmp / "settings.ini", "w") as f: cp.write(f)
    return tmp / "settings.ini"


class Load:
    "Clients sending single-row predictions over keep-alive connections until stopped: every response's status and version."
    def __init__(self, url, x, clients=4):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.body, self.stop, self.seen, self.errors = json.dumps({"inputs": [x.tolist()]}), threading.Event(), [], []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for t in self.threads: t.start()

    def run(self):
        c = HTTPConnection(self.host, int(self.port), timeout=30)
        while not self.stop.is_set():
            try:
                c.request("POST", "/v1/predict", self.body, {"content-type": "application/json"})
                r = c.getresponse(); data = r.read()
                if r.status != 200: self.errors.append((r.status, data[:200])); continue
                self.seen.append((time.monotonic(), json.loads(data)["model"]["version"]))
            except Exception as e:
                self.errors.append(repr(e)); c.close(); c = HTTPConnection(self.host, int(self.port), timeout=30)

    def until(self, version, timeout=30):
        "Wait until responses come from `version`; the time from now until the first one."
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(t >= t0 and v == version for t, v in self.seen[-50:]): return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError(f"no response from v{version} within {timeout} s (last: {self.seen[-3:]})")

    def close(self):
        self.stop.set()
        for t in self.threads: t.join(30)


def test_release_swaps_a_running_service_under_load_canary_and_shadow(smoke, tmp_path):
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.deploy.traffic import bucket
    settings = own_registry(smoke, tmp_path)
    s = load_settings(settings)
    reg = registry_for(s)
    base = smoke[2]["stages"][3]["outputs"]["bundle"]
    m = {k: smoke[2]["metrics"][k] for k in ("test/accuracy", "test/recall_gap")}
    v1 = reg.register("digits-cnn", base, m, run_id=smoke[2]["run_id"])
    v2, v3 = (reg.register("digits-cnn", variant_bundle(reg.store, base, t), m) for t in ("r2", "r3"))
    p = cli("release", f"digits-cnn@{v1}", settings=settings)
    assert p.returncode == 1 and "FAIL application test" in p.stdout and "FAIL approval" in p.stdout
    p = cli("apptest", f"digits-cnn@{v1}", "--seconds", "0.5", settings=settings, timeout=300)    # a real test, a real report
    assert p.returncode == 0, p.stderr
    for v in (v2, v3):                                                      # (their tests: recorded with a report, to save time)
        (tmp_path / f"report{v}.json").write_text("{}")
        reg.record_apptest("digits-cnn", v, True, "passed", {"path": str(tmp_path / f"report{v}.json")})
    for v in (v1, v2, v3):
        assert cli("approve", f"digits-cnn@{v}", "--why", "QA read", settings=settings).returncode == 0
    p = cli("release", f"digits-cnn@{v1}", "--why", "first release", settings=settings)
    assert p.returncode == 0 and f"digits-cnn@production: (none) -> v{v1}" in p.stdout and "ok   approval" in p.stdout, p.stdout + p.stderr

    url, proc = start(settings)                                             # follows production
    x = np.zeros((1, 8, 8), np.uint8)
    load = Load(url, x)
    try:
        load.until(v1)
        steps = [("release", v2), ("rollback", v1), ("release", v2), ("rollback", v1)]
        swaps = []
        for what, v in steps:
            args = ("release", f"digits-cnn@{v}") if what == "release" else ("rollback", "digits-cnn")
            t0 = time.monotonic()
            p = cli(*args, settings=settings)
            assert p.returncode == 0, p.stderr
            load.until(v)
            swaps.append(time.monotonic() - t0)
            assert http("GET", url + "/readyz")[2]["model"] == f"digits-cnn@{v}"
            assert http("GET", url + "/v1/model")[2]["version"] == v
        n = len(load.seen)
        time.sleep(0.3)
        assert len(load.seen) > n                                           # still answering after the last swap
    finally: load.close()
    assert load.errors == [] and len(load.seen) > 200, load.errors[:5]      # zero failed requests across four swaps
    assert {v for _, v in load.seen} == {v1, v2}

    # a canary on 30% of requests, by id; a shadow scoring every request
    assert cli("release", f"digits-cnn@{v3}", "--canary", "30", settings=settings).returncode == 0
    p = cli("release", f"digits-cnn@{v2}", "--shadow", settings=settings)
    assert p.returncode == 0 and f"digits-cnn@shadow: (none) -> v{v2}" in p.stdout
    deadline = time.time() + 30
    while http("GET", url + "/v1/model")[2]["traffic"] != {"primary": v1, "canary": {"version": v3, "percent": 30.0}, "shadow": v2}:
        assert time.time() < deadline, http("GET", url + "/v1/model")[2]; time.sleep(0.05)
    ids = [f"cam7-{i}" for i in range(120)]
    got = {i: http("POST", url + "/v1/predict", {"inputs": [x.tolist()]}, {"x-request-id": i})[2]["model"]["version"] for i in ids}
    assert got == {i: v3 if bucket(i) < 30 else v1 for i in ids}
    assert 15 < sum(v == v3 for v in got.values()) < 60
    metrics = http_text(url + "/metrics")
    assert f'role="canary",version="{v3}"}} 1.0' in metrics and f'role="shadow",version="{v2}"}} 1.0' in metrics
    assert cli("release", f"digits-cnn@{v3}", "--why", "canary looked good", settings=settings).returncode == 0   # completes it
    deadline = time.time() + 30
    while (now := http("GET", url + "/v1/model")[2])["traffic"] != {"primary": v3, "canary": None, "shadow": v2}:
        assert time.time() < deadline, now; time.sleep(0.05)
    assert cli("rollback", "digits-cnn", "--shadow", settings=settings).returncode == 0
    err = stop(proc)
    assert f"now serving digits-cnn@{v2} (loaded, verified and swapped in" in err

    from mlops_nb.core.predlog import predictions
    rows = [r for r in predictions(s.predictions) if r["request_id"].startswith("cam7-")]
    roles = {(r["request_id"], r["role"]): r["version"] for r in rows}
    assert all(roles[(i, "shadow")] == v2 for i in ids)                      # every request scored by the shadow, logged only
    assert all(roles[(i, "canary" if got[i] == v3 else "primary")] == got[i] for i in ids)
    p = cli("predictions", "compare", "digits-cnn", "--json", settings=settings)
    cmp = {(r["version"], r["role"]): r for r in map(json.loads, p.stdout.splitlines())}
    assert cmp[(v2, "shadow")]["agreement"] == 1.0 and cmp[(v2, "shadow")]["compared"] >= len(ids)   # the same network
    assert cmp[(v3, "canary")]["predictions"] == sum(v == v3 for v in got.values())
    table = cli("predictions", "compare", "digits-cnn", settings=settings).stdout
    assert table.splitlines()[0].split()[:4] == ["version", "role", "predictions", "agreement"]
    hist = cli("registry", "history", "digits-cnn", settings=settings).stdout
    assert "canary" in hist and "-> (ended)" in hist
    trail = cli("audit", "digits-cnn", settings=settings).stdout           # each move said once: not `shadow shadow`
    assert "shadow started" in trail and "canary started" in trail and "canary ended" in trail, trail
    assert not any(w in trail for w in ("shadow shadow", "canary canary", "-end ")), trail
    print("swap, from the command to the first response of the new version (s):", [round(t, 2) for t in swaps])


def http_text(url) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=30) as r: return r.read().decode()



def test_export_for_triton_and_kserve(smoke, tmp_path):
    import yaml
    import onnxruntime as ort
    settings, _, _ = smoke
    p = cli("export", "digits-cnn@staging", "--to", str(tmp_path / "repo"), "--format", "kserve",
            "--storage-uri", "s3://models/park", settings=settings)
    assert p.returncode == 0, p.stderr
    files = p.stdout.split()
    assert [Path(f).name for f in files] == ["model.onnx", "config.pbtxt", "inferenceservice.yaml"]
    from mlops_nb.deploy.export import check_triton_config
    cfg = check_triton_config(files[1])                                   # tritonclient's ModelConfig protobuf
    assert cfg["backend"] == "onnxruntime" and [o["name"] for o in cfg["output"]] == ["probabilities", "label"]
    isvc = yaml.safe_load(Path(files[2]).read_text())
    model = isvc["spec"]["predictor"]["model"]
    assert (isvc["kind"], model["protocolVersion"], model["storageUri"]) == ("InferenceService", "v2", "s3://models/park")
    x = np.zeros((2, 1, 8, 8), np.uint8)
    probs, labels = ort.InferenceSession(files[0]).run(["probabilities", "label"], {"image": x})
    assert probs.shape == (2, 10) and len(labels) == 2 and all(isinstance(l, str) for l in labels)
    p = cli("export", "digits-cnn@staging", "--to", str(tmp_path / "x"), "--format", "docker", settings=settings)
    assert p.returncode == 2 and "invalid choice" in p.stderr
