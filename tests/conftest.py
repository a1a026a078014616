"""Shared fixtures: a throw-away workbook (its own settings.ini, runs, store, W&B folders) and a smoke run."""
import configparser, json, os, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def make_workbook(root: Path) -> Path:
    "A settings.ini under `root` that keeps every path in `root` but uses the repo's pipeline notebooks."
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(REPO / "settings.ini")
    for key in ("runs", "store", "lineage", "registry", "wandb_dir", "wandb_data_dir"):
        cp["paths"][key] = str(root / (key + ".db" if key in ("lineage", "registry") else key))
    cp["paths"]["pipelines"] = str(REPO / "nbs" / "pipelines")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "settings.ini", "w") as f:
        cp.write(f)
    return root / "settings.ini"


def cli(*args, settings, env=None, timeout=600):
    "Run `mlops-nb ARGS` in a fresh process, as a user would; returns the CompletedProcess."
    e = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run([str(BIN / "mlops-nb"), *args], capture_output=True, text=True, env=e, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_record(settings, proc):
    "The run.json of the run a `mlops-nb run` process printed."
    run_id = proc.stdout.split()[0]
    return json.loads((Path(settings).parent / "runs" / run_id / "run.json").read_text())


@pytest.fixture(scope="session")
def workbook(tmp_path_factory):
    return make_workbook(tmp_path_factory.mktemp("workbook"))


@pytest.fixture(scope="session")
def smoke(workbook):
    "One smoke-profile pipeline run: (settings path, completed process, run record)."
    p = cli("run", "--profile", "smoke", settings=workbook)
    assert p.returncode == 0, p.stderr
    return workbook, p, run_record(workbook, p)
