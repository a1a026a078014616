"""The serving package: the Dockerfile passes hadolint, and `mlops-nb serve` (and `predict`) run with the training
stack absent, as in the image: the `train` extra's modules are made unimportable in the process."""
import subprocess, tomllib
from pathlib import Path
import numpy as np
from conftest import BIN, REPO, cli
from test_serve import http, start, stop

BLOCKER = '''import importlib.abc, sys
BLOCK = {mods!r}
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK: raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NotInstalled())
'''


def test_dockerfile_passes_hadolint():
    p = subprocess.run([str(BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "USER 10001" in text and "[train]" not in text and "torch" not in text.split("ENTRYPOINT")[0].replace("no torch", "")


def test_the_package_alone_has_no_training_stack():
    from mlops_nb.cli import TRAIN_MODULES
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {d.split("==")[0].lower() for d in meta["dependencies"]}
    train = {d.split("==")[0].lower() for d in meta["optional-dependencies"]["train"]}
    assert "torch" in train and not base & train and not base & {"torch", "pytorch-lightning", "scikit-learn", "wandb"}
    assert {m.replace("_", "-") for m in ("torch", "scipy", "papermill", "wandb")} <= train | {"scipy"}
    assert all("==" in d for d in meta["dependencies"])                  # pinned
    assert "sklearn" in TRAIN_MODULES and "onnxruntime" not in TRAIN_MODULES


def test_serving_without_the_training_stack(smoke, tmp_path):
    from mlops_nb.cli import TRAIN_MODULES
    settings, _, _ = smoke
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(mods=sorted(TRAIN_MODULES)))
    env = {"PYTHONPATH": str(tmp_path)}
    runs = lambda: sorted(p.name for p in (Path(settings).parent / "runs").iterdir())
    before = runs()
    p = cli("run", "--profile", "smoke", "--force", settings=settings, env=env)   # a workbook command: refused before it starts
    assert runs() == before                                                    # no run was started
    assert p.returncode == 2 and "pip install 'mlops_nb[train]'" in p.stderr and "Traceback" not in p.stderr, p.stderr
    url, proc = start(settings, env=env)
    try:
        x = np.zeros((2, 1, 8, 8), np.uint8)
        st, _, body = http("POST", url + "/v1/predict", {"inputs": x.tolist()})
        assert st == 200 and len(body["predictions"]) == 2
        assert http("GET", url + "/v2/health/ready")[0] == 200 and http("GET", url + "/v1/model")[0] == 200
    finally: err = stop(proc)
    assert "ModuleNotFoundError" not in err
    np.save(tmp_path / "rows.npy", x)
    p = cli("predict", "digits-cnn@staging", str(tmp_path / "rows.npy"), "--out", str(tmp_path / "out.csv"), settings=settings, env=env)
    assert p.returncode == 0, p.stderr
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 3
