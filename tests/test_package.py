"""The package stage: ONNX export, the parity gate, the bundle."""
import zipfile
import numpy as np
import onnx
import pytest
import torch
from mlops_nb.build.bundle import BUNDLE_FILES, read_bundle, ort_session
from mlops_nb.build.data import ingest
from mlops_nb.build.model import Classifier
from mlops_nb.build.package import ParityError, export_onnx, parity
from mlops_nb.core.store import Store


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return ingest("digits", tmp_path_factory.mktemp("digits")).dataset


def test_parity_gate_passes_on_a_faithful_export(digits, tmp_path):
    torch.manual_seed(0)
    net = Classifier(channels=4).eval()
    path = export_onnx(net, digits.shape, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx.data").exists()                       # weights inline
    r = parity(net, path, digits.part("test")[0])
    assert r["passed"] and r["max_abs_diff"] <= 1e-4 and r["class_mismatches"] == 0 and r["n"] == 179


def test_parity_gate_fails_on_a_perturbed_export(digits, tmp_path):
    torch.manual_seed(0)
    net = Classifier(channels=4).eval()
    path = export_onnx(net, digits.shape, tmp_path / "m.onnx")
    m = onnx.load(str(path))
    w = next(i for i in m.graph.initializer if len(i.dims) == 2)        # a linear layer's weights
    a = onnx.numpy_helper.to_array(w).copy(); a[0] += 0.5
    w.CopyFrom(onnx.numpy_helper.from_array(a, w.name)); onnx.save(m, str(tmp_path / "bad.onnx"))
    with pytest.raises(ParityError, match=r"max \|logit difference\| [0-9.e+-]+ \(tolerance 0.0001\)"):
        parity(net, tmp_path / "bad.onnx", digits.part("test")[0])


def test_bundle_from_the_smoke_run(smoke):
    settings, _, rec = smoke
    st = {s["name"]: s for s in rec["stages"]}
    assert 0 <= rec["metrics"]["package/parity_max_abs_diff"] <= 1e-4
    store = Store(settings.parent / "store")
    path = store.path(st["package"]["outputs"]["bundle"])
    from mlops_nb.build.bundle import MONITORING
    from mlops_nb.core.reference import FILES
    extra = ("embedding.npz", "validation.npz")       # the convnet exports its embedding: its drift reference and the validation rows
    assert sorted(zipfile.ZipFile(path).namelist()) == sorted([*BUNDLE_FILES, *(MONITORING + f for f in (*FILES, *extra))])
    b = read_bundle(path)
    assert b.signature["inputs"][0] == {"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "uint8", "range": [0, 255], "layout": "NCHW"}
    assert b.preprocess["function"] == "mlops_nb.build.data.prepare_image" and b.preprocess["image_size"] == 8
    assert b.labels == [str(i) for i in range(10)]
    assert b.lineage["dataset"] == st["ingest"]["outputs"]["dataset"] and b.lineage["checkpoint"] == st["train"]["outputs"]["model"]
    assert b.metrics["metrics"]["test/accuracy"] == rec["metrics"]["test/accuracy"]
    assert "## Intended use" in b.card and "## Limitations" in b.card and "recall gap" in b.card
    assert ort_session(b.onnx).get_inputs()[0].shape[0] == "batch"       # dynamic batch dimension
    from mlops_nb.build.data import load_dataset
    x, y = load_dataset(store.path(st["ingest"]["outputs"]["dataset"]), store).part("test")
    x = np.asarray(x)                                   # the test split, read whole
    for n in (1, 7, 179):
        assert b.predict_logits(x[:n]).shape == (n, 10)
    assert abs((b.predict_logits(x).argmax(1) == y).mean() - rec["metrics"]["test/accuracy"]) < 1e-9
    with pytest.raises(ValueError, match=r"uint8 images of shape \(N, 1, 8, 8\)"):
        b.predict_logits(x.astype(np.float32))
    report = (settings.parent / "runs" / rec["run_id"] / "04_package.ipynb").read_text()
    assert "ort_speedup" in report and "Model card" in report
