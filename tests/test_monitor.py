"""Monitoring as a reviewer meets it: the smoke model's bundle carries its monitoring reference; each kind of drift the
simulator makes raises the drift it should (and class-shift shows as prediction drift), labelled drifted traffic shows
the accuracy drop with its label count; through the CLI, simulated traffic over days becomes a monitoring run (clean
traffic: no drift, estimated accuracy close to realized; drifted traffic: alerts naming what moved, by day and by tag);
an empty window says so."""
import configparser, json
from pathlib import Path
import numpy as np
import pytest
from conftest import cli, width_at_1280
from test_serve import start, stop


@pytest.fixture(scope="module")
def model(smoke):
    "The smoke run's registered version: (settings, 'digits-cnn@V', bundle, monitoring reference, test x, test y)."
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.build.bundle import read_bundle
    from mlops_nb.build.data import load_dataset
    from mlops_nb.core.reference import MonitoringReference
    settings, _, rec = smoke
    reg = registry_for(load_settings(settings))
    v = json.loads(Path(reg.store.path(next(s for s in rec["stages"] if s["name"] == "register")["outputs"]["registration"])).read_text())
    row = reg.version(v["name"], v["version"])
    b = read_bundle(reg.verify(v["name"], v["version"], row["bundle"]))
    x, y = load_dataset(reg.store.path(b.lineage["dataset"]), reg.store).part("test")
    x = np.asarray(x)                                   # the test split, read whole
    reg.close()
    return settings, f"{v['name']}@{v['version']}", b, MonitoringReference.from_files(b.monitoring), x, y


THRESHOLDS = {"alpha": 0.05, "max_drifted_share": 0.25, "max_psi": 0.2, "min_labels": 30, "min_accuracy": 0.8,
              "max_accuracy_drop": 0.05, "max_error_rate": 0.01, "p99_ms": 50.0,
              "min_class_labels": 20, "max_recall_gap": 0.2, "max_slice_gap": 0.2}


def judged(b, mref, x, y):
    "Figures and check statuses of a window holding `x` as the service would have logged it (labels for every row)."
    from mlops_nb.monitor.windows import Window, figures, checks
    from mlops_nb.core.reference import softmax
    from mlops_nb.core.predlog import logged_columns
    p, n = softmax(b.predict_logits(x)).astype(np.float32), len(x)
    c = {"ts": np.arange(n, dtype=float), **logged_columns(x), "p": p, "latency_ms": np.ones(n), "version": np.ones(n, int),
         "role": np.array(["primary"] * n), "tags": np.array(["{}"] * n),
         "true_label": np.array([b.labels[i] for i in y], dtype=object), "label_ts": np.arange(n, dtype=float) + 5}
    f = figures(Window(mref, 0, n).add(c), THRESHOLDS["alpha"])
    return f, {k["check"]: k["status"] for k in checks(f, THRESHOLDS)}


def test_the_bundle_carries_a_monitoring_reference_from_the_validation_split(model):
    _, _, b, mref, _, _ = model
    assert mref is not None and mref.info["split"] == "val" and mref.info["rows"] == mref.features.n[0]
    assert mref.features.features == 64 and mref.outputs.names == [str(c) for c in b.labels]
    assert 0.05 < mref.info["calibration"]["temperature"] < 20 and sum(mref.info["label_counts"]) == mref.info["rows"]


@pytest.mark.parametrize("kind", ["noise", "blur", "rotate", "invert", "brightness", "class-shift"])
def test_each_drift_raises_what_it_should(model, kind):
    from mlops_nb.monitor.simulate import apply_drift
    _, _, b, mref, x, y = model
    clean, cs = judged(b, mref, x, y)
    xd, yd = apply_drift(kind, x, y, 0.8 if kind == "class-shift" else 0.5, seed=3)
    f, st = judged(b, mref, xd, yd)
    assert cs["input drift"] == cs["output drift"] == cs["prediction drift"] == "ok", cs     # the test split itself: no drift
    if kind == "class-shift":                                  # the same pictures, other classes: the predictions move
        assert st["prediction drift"] == "ALERT" and f["prediction"]["psi"] > 5 * clean["prediction"]["psi"], (f["prediction"], st)
    else:
        assert st["input drift"] == "ALERT" and f["drift"]["features"]["share"] > 0.25, (f["drift"]["features"]["share"], st)
        assert st["output drift"] == "ALERT", st               # the model's own outputs moved too (black-box shift detection)
        assert f["accuracy"]["n"] == len(x) and f["accuracy"]["value"] < clean["accuracy"]["value"], (f["accuracy"], clean["accuracy"])


def monitoring_workbook(smoke, tmp: Path) -> Path:
    "Settings sharing the smoke workbook's registry and store, with a prediction log of their own and client times on."
    settings = Path(smoke[0])
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    for k in ("store", "runs", "pipelines", "wandb_dir", "wandb_data_dir", "lineage", "registry"):
        if cp.has_option("paths", k): cp["paths"][k] = str((settings.parent / cp["paths"][k]).resolve())
    cp["paths"]["predictions"], cp["paths"]["governance"] = str(tmp / "predictions.db"), str(tmp / "governance.db")
    cp["serve"]["client_time"] = "true"
    with open(tmp / "settings.ini", "w") as f: cp.write(f)
    return tmp / "settings.ini"


def monitored(settings, *args) -> dict:
    "Run `mlops-nb monitor ARGS`; the figures it recorded (monitor.json from the store) and the run record."
    from mlops_nb.core.config import load_settings
    from mlops_nb.core.store import Store
    p = cli("monitor", *args, settings=settings)
    assert p.returncode == 0, p.stderr
    run_id, report = p.stdout.split()[:2]
    rec = json.loads((Path(report).parent / "run.json").read_text())
    assert rec["pipeline"] == "monitor" and rec["status"] == "succeeded" and Path(report).is_file()
    st = rec["stages"][0]
    fig = json.loads(Store(load_settings(settings).store).read_bytes(st["outputs"]["monitor"]))
    return {**fig, "stderr": p.stderr, "run": rec}


def test_simulated_traffic_becomes_a_monitoring_report(model, smoke, tmp_path, browser):
    settings, ref, b, _, x, _ = model
    own = monitoring_workbook(smoke, tmp_path)
    empty = cli("monitor", "--model", ref, settings=own)
    assert empty.returncode == 2 and "no prediction log" in empty.stderr                 # nothing served yet: said before a run starts
    url, p = start(own, "--model", ref)
    try:
        n = len(x)                                                  # the whole test split, each row once: a clean sample
        sim = cli("simulate", "--url", url, "--n", str(n), "--days", "2", "--feedback-rate", "1", "--tag", "camera=north", settings=own)
        assert sim.returncode == 0, sim.stderr
        clean = monitored(own, "--model", ref, "--since", "3d")
        st = {c["check"]: c["status"] for c in clean["total"]["checks"]}
        t = clean["total"]
        assert t["rows"] == n and t["labels"]["labelled"] == n and t["accuracy"]["n"] == n
        assert st["input drift"] == st["output drift"] == st["prediction drift"] == "ok", (st, t["drift"]["features"]["share"])
        assert abs(t["estimated_accuracy"] - t["accuracy"]["value"]) < 0.08, (t["estimated_accuracy"], t["accuracy"])
        assert t["estimate"]["verdict"] == "reliable", t["estimate"]["why"]                # clean: the reweighted estimate holds
        assert abs(t["estimate"]["weighted"] - t["accuracy"]["value"]) < 0.08, (t["estimate"], t["accuracy"])
        assert "input drift" in clean["stderr"] and f"{ref}: {n} predictions" in clean["stderr"]

        sim = cli("simulate", "--url", url, "--n", "300", "--days", "1", "--drift", "invert", "--severity", "1",
                  "--feedback-rate", "0.5", "--tag", "camera=south", "--seed", "1", settings=own)
        assert sim.returncode == 0, sim.stderr
    finally: stop(p)
    daily = monitored(own, "--model", ref, "--since", "3d", "--every", "1d")
    t = daily["total"]
    st = {c["check"]: c for c in t["checks"]}
    assert daily["status"] == "ALERT" and st["input drift"]["status"] == st["output drift"]["status"] == "ALERT"
    assert st["embedding drift"]["status"] == "ALERT", st["embedding drift"]                # the model's own view moved too
    assert t["estimate"]["verdict"] == "unreliable" and st["estimated accuracy"]["status"] != "ok", st["estimated accuracy"]
    assert st["estimated accuracy"]["detail"].startswith("unreliable: ") and "at most" in st["estimated accuracy"]["detail"]
    assert t["rows"] == n + 300 and n + 120 <= t["labels"]["labelled"] <= n + 180
    assert len(daily["windows"]) in (3, 4) and sum(w["rows"] for w in daily["windows"]) == t["rows"]   # UTC days
    recent = max(daily["windows"][-2:], key=lambda w: w["rows"])    # the inverted pictures of the last 24 h: yesterday's and
    assert any(c["status"] == "ALERT" for c in recent["checks"]), recent["checks"]   # today's window (just after midnight UTC,
    # today's holds a few rows only, too few to judge: the fuller of the two alerts)
    sl = {s["slice"]: s for s in t["slices"]}
    assert sl["camera=north"]["rows"] == n and sl["camera=south"]["rows"] == 300
    assert sl["camera=south"]["accuracy"] < sl["camera=north"]["accuracy"] - 0.3 and sl["camera=south"]["psi"] > 0.2
    assert sl["camera=south"]["confidence_drifted"] and not sl["camera=north"]["confidence_drifted"], sl
    html = (Path(daily["run"]["run_dir"]) / "01_monitor.html").read_text()
    assert "camera=south" in html and "alert(s) raised" in html and "Least like the validation images" in html
    assert width_at_1280(browser, Path(daily["run"]["run_dir"]) / "01_monitor.html", tmp_path / "monitor.png") <= 1280
    # the failed checks became alerts, on record with the run that raised them; the same verdict again: no new alert
    raised = json.loads(cli("alerts", "--json", settings=own).stdout)
    assert {"input drift", "output drift"} <= {a["check_name"] for a in raised}, raised
    assert all(a["run_id"] == daily["run"]["run_id"] and a["deliveries"][0]["channel"] == "report" for a in raised)
    assert "alert(s) raised" in daily["stderr"]
    again = monitored(own, "--model", ref, "--since", "3d", "--every", "1d")
    assert again["status"] == "ALERT" and "no new alert" in again["stderr"]
    assert len(json.loads(cli("alerts", "--json", settings=own).stdout)) == len(raised)
    assert "input drift" in cli("alerts", settings=own).stdout


def test_strict_exits_1_on_an_alert_and_an_empty_window_says_so(model, smoke, tmp_path):
    settings, ref, b, _, x, _ = model
    own = monitoring_workbook(smoke, tmp_path)
    from mlops_nb.core.predlog import PredictionLog
    from mlops_nb.core.reference import softmax
    from mlops_nb.core.config import load_settings
    from mlops_nb.monitor.simulate import invert
    log = PredictionLog(load_settings(own).predictions, flush_ms=10)
    xi = invert(x, 1.0)
    p = softmax(b.predict_logits(xi)).astype(np.float32)
    v = int(ref.split("@")[1])
    for i in range(len(xi)):
        log.add(f"r{i}", ("digits-cnn", v, "sha256:test"), xi[i:i + 1], p[i:i + 1], [b.labels[int(p[i].argmax())]], 1.0, "/v1/predict")
    log.close()
    q = cli("monitor", "--model", ref, "--strict", settings=own)
    assert q.returncode == 1 and "ALERT input drift" in q.stderr, q.stderr
    e = monitored(own, "--model", ref, "--since", "2026-01-01", "--until", "2026-01-02")
    assert e["total"]["rows"] == 0 and e["status"] == "n/a"
    assert "no predictions of this version in the window" in e["stderr"]
    assert "No predictions of this version in the period" in (Path(e["run"]["run_dir"]) / "01_monitor.html").read_text()
