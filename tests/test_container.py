"""The serving package: the Dockerfile passes hadolint, and `mlops-nb serve` (and `predict`) run with the training
stack absent, as in the image: the `train` extra's modules are made unimportable in the process. The slow test
(`make test-slow`) builds the image with podman from a base made here and calls the service in the container."""
import os, subprocess, tomllib
from pathlib import Path
import numpy as np
import pytest
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
    from mlops_nb.cli.common import TRAIN_MODULES
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {d.split("==")[0].lower() for d in meta["dependencies"]}
    train = {d.split("==")[0].lower() for d in meta["optional-dependencies"]["train"]}
    assert "torch" in train and not base & train and not base & {"torch", "pytorch-lightning", "scikit-learn", "wandb"}
    assert {m.replace("_", "-") for m in ("torch", "scipy", "papermill", "wandb")} <= train | {"scipy"}
    assert all("==" in d for d in meta["dependencies"])                  # pinned
    assert "sklearn" in TRAIN_MODULES and "onnxruntime" not in TRAIN_MODULES


def test_serving_without_the_training_stack(smoke, tmp_path):
    from mlops_nb.cli.common import TRAIN_MODULES
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


# ---- the image itself (slow: `make test-slow`) ----
BASE = "localhost/mlops-nb-base:bookworm"
CONTAINERS_CONF = """[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman(conf, *args, timeout=900, check=True):
    "`podman ARGS` with runc as its runtime (this machine's cgroups refuse crun) and no default ulimits."
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "CONTAINERS_CONF": str(conf)})
    assert not check or p.returncode == 0, f"podman {' '.join(args)}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def local_base(conf, tmp):
    "A Python 3.11 base made here (no image registry is reachable): Debian bookworm by debootstrap, a venv, `podman import`."
    if podman(conf, "image", "exists", BASE, check=False).returncode == 0: return BASE
    root = tmp / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(root),
                    "http://deb.debian.org/debian"], check=True, capture_output=True, timeout=1800)
    subprocess.run(["chroot", str(root), "python3", "-m", "venv", "/opt/python"], check=True, timeout=300)
    tar = tmp / "rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True, timeout=600)
    podman(conf, "import", "--change", "ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           str(tar), BASE)
    return BASE


@pytest.mark.slow
def test_the_image_builds_and_serves(smoke, tmp_path):
    import configparser, shutil, socket, time
    settings = Path(smoke[0])
    conf = tmp_path / "containers.conf"; conf.write_text(CONTAINERS_CONF)
    base = local_base(conf, tmp_path)
    wheels = tmp_path / "wheels"                       # the serving dependencies, fetched here: the build runs offline
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    subprocess.run([str(BIN / "python"), "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(wheels),
                    *deps, "setuptools>=77"], check=True, timeout=900)
    image = "localhost/mlops-nb-serve:test"
    podman(conf, "build", "--runtime", "runc", "--network", "none", "--volume", f"{wheels}:/wheels:ro",
           "--build-arg", f"BASE={base}", "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/wheels",
           "-t", image, str(REPO), timeout=1800)
    # the workbook as the container sees it: its registry copied where uid 10001 may write (SQLite WAL), the store read-only
    from mlops_nb.core.config import load_settings
    s = load_settings(settings)
    wb = tmp_path / "workbook"; wb.mkdir(); wb.chmod(0o777)
    shutil.copy(s.registry, wb / "registry.db"); (wb / "registry.db").chmod(0o666)
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    for k, v in (("store", s.store), ("runs", s.runs), ("pipelines", s.pipelines), ("wandb_dir", s.wandb_dir),
                 ("wandb_data_dir", s.wandb_data_dir), ("lineage", s.lineage)): cp["paths"][k] = str(v)
    cp["paths"]["registry"], cp["paths"]["predictions"] = "/workbook/registry.db", "/workbook/predictions.db"
    with open(wb / "settings.ini", "w") as f: cp.write(f)
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]
    name = f"mlops-nb-test-{port}"
    podman(conf, "run", "-d", "--rm", "--name", name, "--network", "host", "-v", f"{wb}:/workbook",
           "-v", f"{s.store}:{s.store}:ro", image, "--host", "127.0.0.1", "--port", str(port))
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while True:
            try:
                if http("GET", url + "/v2/health/ready")[0] == 200: break
            except OSError: pass
            assert time.time() < deadline, podman(conf, "logs", name, check=False).stderr
            time.sleep(0.25)
        x = np.zeros((1, 1, 8, 8), np.uint8)
        st, _, body = http("POST", url + "/v1/predict", {"inputs": x.tolist()})
        assert st == 200 and body["model"]["name"] == "digits-cnn", body
        who = podman(conf, "exec", name, "id", "-u").stdout.strip()
        assert who == "10001"                                               # not root
        p = podman(conf, "exec", name, "python", "-c", "import torch", check=False)
        assert p.returncode != 0 and "No module named 'torch'" in p.stderr   # the serving image carries no training stack
    finally:
        podman(conf, "stop", "-t", "10", name, check=False)
