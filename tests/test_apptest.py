"""`mlops-nb apptest`: the smoke run's version tested as an application; the verdict lands on the registry version and
the production gate reads it; a gate that cannot hold fails the test with the reason recorded."""
import json
from pathlib import Path
from conftest import cli


def test_apptest_passes_and_is_recorded(smoke):
    settings, _, _ = smoke
    p = cli("apptest", "digits-cnn@staging", "--seconds", "1", settings=settings, timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout
    assert "ok    replay: /v1/predict/image (PNG uploads)" in p.stdout and "FAIL" not in p.stdout
    assert "error contract: 12 of 12" in p.stdout
    report = Path(p.stderr.strip().rsplit("report: ", 1)[1])
    rep = json.loads(report.read_text())
    assert rep["passed"] and rep["load"]["requests"] > 0 and rep["load"]["errors"] == 0
    assert all(c["labels_equal"] for c in rep["checks"] if c["check"].startswith("replay"))
    assert (report.parent / "predictions.db").exists()                 # test traffic has its own log, apart from production's
    shown = cli("registry", "show", "digits-cnn@staging", settings=settings)
    assert "application test passed" in shown.stdout, shown.stdout


def test_a_gate_that_cannot_hold_fails_with_its_reason(smoke, tmp_path):
    import configparser
    settings, _, _ = smoke
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    if not cp.has_section("apptest"): cp.add_section("apptest")
    cp["apptest"]["p99_ms"] = "0.001"                                   # no service answers in a microsecond
    s2 = tmp_path / "settings.ini"
    with open(s2, "w") as f: cp.write(f)
    p = cli("apptest", "digits-cnn@staging", "--seconds", "1", "--no-record", "--json", settings=s2, timeout=300)
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    failed = [c["check"] for c in rep["checks"] if not c["passed"]]
    assert failed == ["load: p99"] and "FAILED: load: p99" in p.stderr
    p = cli("apptest", "digits-cnn", settings=settings)
    assert p.returncode == 2 and "NAME@VERSION" in p.stderr


def camera_bundle(store, dataset: str) -> str:
    "A real bundle over 3x224x224 uint8 frames without torch (the channels' means -> 3 logits), its lineage naming `dataset`."
    import tempfile
    from onnx import helper, TensorProto
    from mlops_nb.build.bundle import write_bundle
    g = helper.make_graph([helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                           helper.make_node("ReduceMean", ["f"], ["mean"], axes=[2, 3], keepdims=0),
                           helper.make_node("MatMul", ["mean", "w"], ["logits"])], "camera",
                          [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 3, 224, 224])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [3, 3], [0.05, 0, 0, 0, 0.05, 0, 0, 0, 0.05])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:                  # the store keeps the bundle: nothing left in /tmp
        d = Path(tmp)
        (d / "model.onnx").write_bytes(m.SerializeToString())
        b = write_bundle(d / "bundle.zip", d / "model.onnx", (3, 224, 224), ["red", "green", "blue"],
                         {"metrics": {"test/accuracy": 0.99, "test/recall_gap": 0.0}}, {"source": "camera", "dataset": dataset}, "camera frames\n")
        return store.put_file(b)


def test_a_224px_model_passes_its_application_test(tmp_path):
    "Camera-sized frames (3x224x224, about 40 MB of JSON for 64 rows, over [serve] max_body): the replay sizes its requests "
    "by bytes and the whole application test passes (it died of ConnectionResetError: [Errno 104] at the first replay)."
    import numpy as np
    from conftest import make_workbook
    from mlops_nb.deploy.apptest import run_apptest
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.data import Dataset, save_dataset
    from mlops_nb.build.registry import registry_for
    s = load_settings(make_workbook(tmp_path / "wb"))
    rng, n = np.random.default_rng(0), 80
    y = np.arange(n) % 3
    x = rng.integers(0, 160, (n, 3, 224, 224), dtype=np.uint8)
    x[np.arange(n), y] += 90                                            # the class's channel is the brightest
    reg = registry_for(s)
    ds = reg.store.put_file(save_dataset(Dataset(x, y, np.full(n, 2, np.uint8), ["red", "green", "blue"]), tmp_path / "ds.npz"))
    assert reg.register("cam-cnn", camera_bundle(reg.store, ds)) == 1
    reg.close()
    rep = run_apptest(s, "cam-cnn@1", tmp_path / "apptest", {"seconds": 1}, log=lambda *a: None)
    by = {c["check"]: c for c in rep["checks"]}
    assert rep["passed"], [(c["check"], c["detail"]) for c in rep["checks"] if not c["passed"]]
    assert by["replay: OIP /infer"]["n"] == n and all(c["labels_equal"] for k, c in by.items() if k.startswith("replay"))
    assert rep["load"]["requests"] > 0 and rep["load"]["errors"] == 0
    assert rep["seconds"] < 30, rep["seconds"]
    small = run_apptest(s, "cam-cnn@1", tmp_path / "apptest2", {"seconds": 0.5, "replay_mb": 4}, log=lambda *a: None)
    oip = {c["check"]: c for c in small["checks"]}["replay: OIP /infer"]   # 4 MiB of 147 KB frames: 27 of the 80, memory bounded
    assert small["passed"] and oip["n"] == 27 and "a sample of the 80" in oip["detail"], oip
