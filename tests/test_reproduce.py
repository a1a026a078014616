"""`mlops-nb reproduce`: identical on the same machine; differs when a recorded input changed."""
import pytest
import json
import numpy as np
from PIL import Image
from conftest import cli, make_workbook, run_record


def test_reproduce_smoke_is_identical(smoke):
    settings, _, rec = smoke
    p = cli("reproduce", rec["run_id"], settings=settings)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "verdict: identical" in p.stdout
    new_id = p.stdout.split("new run ")[1].split(":")[0]
    new = json.loads((settings.parent / "runs" / new_id / "run.json").read_text())
    assert new["reproduces"] == rec["run_id"] and not any(s["cached"] for s in new["stages"])   # the cache was ignored


def test_reproduce_leaves_the_registry_alone(smoke):
    settings, _, rec = smoke
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import Registry
    from mlops_nb.core.store import Store
    p = cli("run", "--profile", "smoke", "-p", "train.channels=[4]", settings=settings)     # a newer version takes staging
    assert p.returncode == 0, p.stderr
    newer = run_record(settings, p)["metrics"]["register/version"]
    s = load_settings(settings)
    reg = Registry(s.registry, Store(s.store))
    history, aliases = reg.history("digits-cnn"), reg.aliases("digits-cnn")
    assert aliases["staging"] == newer != rec["metrics"]["register/version"]
    p = cli("reproduce", rec["run_id"], settings=settings)                                 # the older run, again
    assert p.returncode == 0 and "verdict: identical" in p.stdout, p.stdout + p.stderr
    assert reg.history("digits-cnn") == history and reg.aliases("digits-cnn") == aliases   # no alias moved, no row added
    new_id = p.stdout.split("new run ")[1].split(":")[0]
    new = json.loads((settings.parent / "runs" / new_id / "run.json").read_text())
    assert new["metrics"]["register/version"] == rec["metrics"]["register/version"]        # it reports the version it matches
    report = (settings.parent / "runs" / new_id / "05_register.ipynb").read_text()
    assert "Not registered again" in report and "reproducing" in report


@pytest.mark.slow      # about 25 s; the identical and registry cases stay in make test: `make test-slow`, keeping `make test` under 15 minutes
def test_reproduce_differs_when_an_input_changed(tmp_path):
    settings = make_workbook(tmp_path / "wb")
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for k, c in enumerate(("a", "b", "c")):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray((rng.random((12, 12)) * 80 + 60 * k).astype(np.uint8)).save(root / c / f"{i}.png")
    p = cli("run", "--profile", "smoke", "-p", f"ingest.source=imagefolder:{root}", "-p", "ingest.image_size=12", settings=settings)
    assert p.returncode == 0, p.stderr
    rec = run_record(settings, p)
    Image.fromarray(np.full((12, 12), 255, np.uint8)).save(root / "a" / "3.png")     # the recorded input changes
    p = cli("reproduce", rec["run_id"], settings=settings)
    assert p.returncode == 1
    assert "verdict: differs" in p.stdout and "output ingest.dataset" in p.stdout and "raw data changed" in p.stdout


def test_reproduce_refuses_unknown_run(workbook):
    p = cli("reproduce", "19990101-000000-0000", settings=workbook)
    assert p.returncode == 2 and "matches no run" in p.stderr
