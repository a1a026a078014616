"""Real backbones: torchvision imports beside the CPU torch, every architecture exports through the parity gate with its
normalisation inside the graph, weights files load, and a run fine-tunes one from a weights file it names."""
import subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from mlops_nb.build.bundle import read_bundle
from mlops_nb.build.data import Dataset, stratified_split
from mlops_nb.build.model import ARCHS, Classifier, torchvision_module
from mlops_nb.build.package import package
from conftest import cli, make_workbook, run_record


def test_lightning_and_torchvision_import_beside_the_cpu_torch():
    # torchmetrics (under Lightning) imports torchvision, whose PyPI wheel cannot load its C++ ops on the CPU build of torch:
    # before the shim, `import mlops_nb.build.train` failed with "operator torchvision::nms does not exist"
    p = subprocess.run([sys.executable, "-c", "import mlops_nb.build.train, torchvision; print(torchvision.__version__)"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-800:]
    assert p.stdout.startswith("0.28.0")


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    return Dataset(rng.integers(0, 256, (60, 3, 32, 32), dtype=np.uint8), y, stratified_split(y, 0.2, 0.2), ["cat", "dog", "empty"])


@pytest.mark.parametrize("arch", ARCHS[1:])
def test_every_backbone_exports_through_the_parity_gate(arch, frames, tmp_path):
    torch.manual_seed(0)
    net = Classifier(arch, 3, 3).eval()
    r = package(frames, net, frames.classes, {"metrics": {}, "per_class": []}, {"arch": arch}, tmp_path, measure_latency=False)
    b = read_bundle(r.path)
    assert r.parity["passed"] and r.parity["n"] == len(frames.part("test")[1])
    assert b.signature["inputs"][0]["dtype"] == "uint8" and "ImageNet" in b.preprocess["normalize"]
    x = frames.part("test")[0]                 # the graph normalises: raw uint8 pixels in, the torch network's logits out
    with torch.no_grad(): want = net(torch.as_tensor(x).float()).numpy()
    np.testing.assert_allclose(b.predict_logits(x), want, atol=1e-4)
    assert "(torchvision), trained from random initialisation (no pretrained weights)" in r.card


def _folder(root: Path, n: int = 12, size: int = 24) -> Path:
    from PIL import Image
    rng = np.random.default_rng(1)
    for k, c in enumerate(("cat", "dog", "empty")):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 80, (size, size, 3), dtype=np.uint8); a[..., k] += 150
            Image.fromarray(a).save(root / c / f"{i}.png")
    return root


def test_imagenet_weights_missing_are_refused_before_the_run(tmp_path):
    settings = make_workbook(tmp_path / "wb")
    home = tmp_path / "torch-home"
    p = cli("run", "--profile", "smoke", "-p", f"ingest.source=imagefolder:{_folder(tmp_path / 'img')}", "-p", "ingest.mode=RGB",
            "-p", "train.arch=resnet18", "-p", "train.weights=imagenet", settings=settings, env={"TORCH_HOME": str(home)}, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "resnet18-f37072fd.pth is not in the torch hub cache" in err[0], p.stderr
    assert str(home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in err[0]
    assert not any((tmp_path / "wb" / "runs").glob("*/01_ingest.ipynb"))          # nothing ran


def _fine_tune(tmp_path):
    "A smoke run fine-tuning mobilenet_v3_small from a weights file it names: (settings, weights path, args, process)."
    settings = make_workbook(tmp_path / "wb")
    w = tmp_path / "mnv3.pth"                         # a weights file as torchvision ships them (random here: nothing is fetched)
    torch.manual_seed(0)
    torch.save(torchvision_module().models.mobilenet_v3_small(num_classes=1000).state_dict(), w)
    args = ["run", "--profile", "smoke", "-p", f"ingest.source=imagefolder:{_folder(tmp_path / 'img')}", "-p", "ingest.mode=RGB",
            "-p", "train.arch=mobilenet_v3_small", "-p", f"train.weights={w}", "-p", "train.freeze_epochs=1", "-p", "train.epochs=[2]",
            "-p", "train.flip=True", "-p", "register.model_name=cams"]
    p = cli(*args, settings=settings)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return settings, w, args, p


def _cached(settings, proc) -> dict: return {s["name"]: s["cached"] for s in run_record(settings, proc)["stages"]}


def test_a_run_fine_tunes_a_backbone_from_a_weights_file(tmp_path):
    settings, w, args, p = _fine_tune(tmp_path)
    rec = run_record(settings, p)
    from mlops_nb.build.weights import file_digest
    digest = file_digest(w)
    st = {s["name"]: s for s in rec["stages"]}
    assert st["train"]["raw"] == {"raw:weights": digest}                       # an input of the run: the cache key has it
    m = rec["metrics"]
    assert (m["train/arch"], m["train/init_weights"], m["train/device"], m["train/precision"]) == ("mobilenet_v3_small", digest, "cpu", "32")
    assert m["train/device_name"]
    from mlops_nb.core.store import Store
    b = read_bundle(Store(settings.parent / "store").path(st["package"]["outputs"]["bundle"]))
    assert digest in b.card and "ImageNet" in b.preprocess["normalize"] and b.lineage["weights"] == digest
    w.write_bytes(w.read_bytes())                                              # same bytes, new mtime: every stage cached
    again = cli(*args, settings=settings)
    assert again.returncode == 0 and all(_cached(settings, again).values()), again.stderr


@pytest.mark.slow      # a second full run (about 30 s): `make test-slow`; the cache hit on the same bytes is in make test
def test_other_weights_train_again(tmp_path):
    settings, w, args, p = _fine_tune(tmp_path)
    sd = torch.load(w, weights_only=True); sd["features.0.0.weight"] += 1; torch.save(sd, w)   # other weights: train runs again
    p3 = cli(*args, settings=settings)
    assert p3.returncode == 0, p3.stderr
    c3 = _cached(settings, p3)
    assert c3["ingest"] and not c3["train"], c3
