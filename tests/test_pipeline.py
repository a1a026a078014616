"""The pipeline end to end through `mlops-nb run`: every stage notebook executed by papermill."""
import hashlib, json, os, subprocess, sys
from pathlib import Path
import nbformat
import pytest
from conftest import BIN, REPO, cli, make_workbook, run_record
from mlops_nb.core.config import load_settings
from mlops_nb.core.store import Store

STAGES = ["ingest", "train", "evaluate", "package", "register", "apptest"]


def test_smoke_run_record(smoke):
    settings, proc, rec = smoke
    run_dir = settings.parent / "runs" / rec["run_id"]
    assert proc.stdout.split()[0] == rec["run_id"] and Path(proc.stdout.split()[1]).is_file()  # id, then the report
    assert rec["status"] == "succeeded"
    assert set(rec["git"]) == {"commit", "dirty"} and len(rec["git"]["commit"]) == 40
    assert rec["env_digest"].startswith("sha256:") and rec["env"]["torch_threads"] == 2
    assert rec["params"]["train"]["epochs"] == [1] and rec["params"]["ingest"]["source"] == "digits"
    assert [s["name"] for s in rec["stages"]] == STAGES
    store = Store(settings.parent / "store")
    for i, s in enumerate(rec["stages"], 1):
        assert s["status"] == "succeeded" and s["cached"] is False and s["started"] <= s["ended"]
        for d in list(s["inputs"].values()) + list(s["outputs"].values()):
            assert store.path(d).is_file()            # present, and its content matches its digest
        nb = nbformat.read(run_dir / f"{i:02d}_{s['name']}.ipynb", as_version=4)
        assert s["notebook_digest"] == "sha256:" + hashlib.sha256((run_dir / s["notebook"]).read_bytes()).hexdigest()
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert nb.metadata.papermill["parameters"]["run_dir"] == str(run_dir)
        assert (run_dir / f"{i:02d}_{s['name']}.html").stat().st_size > 10_000
    ingest, train, evaluate, package, register, apptest = rec["stages"]
    assert train["inputs"] == {"dataset": ingest["outputs"]["dataset"]}
    assert register["inputs"] == {"bundle": package["outputs"]["bundle"]}
    assert apptest["inputs"] == {"registration": register["outputs"]["registration"]}
    assert json.loads(store.read_bytes(apptest["outputs"]["apptest"]))["passed"] and rec["metrics"]["apptest/passed"] == 1
    assert evaluate["inputs"] == {"dataset": ingest["outputs"]["dataset"], "model": train["outputs"]["model"]}
    assert 0.5 < rec["metrics"]["test/accuracy"] <= 1 and 0 <= rec["metrics"]["test/recall_gap"] <= 1
    metrics = json.loads(store.read_bytes(evaluate["outputs"]["metrics"]))
    assert metrics["metrics"]["test/accuracy"] == rec["metrics"]["test/accuracy"]
    assert len(metrics["per_class"]) == 10 and len(metrics["confusion"]) == 10
    assert store.partials() == []


def test_ingest_report_has_data_card(smoke):
    settings, _, rec = smoke
    nb = nbformat.read(settings.parent / "runs" / rec["run_id"] / "01_ingest.ipynb", as_version=4)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2                                      # class balance chart and sample grid
    text = json.dumps([c.get("outputs") for c in nb.cells])
    assert "version" in text and rec["stages"][0]["outputs"]["dataset"] in text


def test_same_inputs_same_weights(smoke):
    "Training is deterministic: a second run, every stage executed again, gives the same dataset and weights digest."
    settings, _, rec = smoke
    p = cli("run", "--profile", "smoke", "--force", settings=settings)
    assert p.returncode == 0, p.stderr
    rec2 = run_record(settings, p)
    assert rec2["run_id"] != rec["run_id"] and not any(s["cached"] for s in rec2["stages"])
    assert rec2["metrics"]["train/weights"] == rec["metrics"]["train/weights"]
    same = lambda r: [s["outputs"] for s in r["stages"] if not s.get("measures")]      # the application test measures latency
    assert same(rec2) == same(rec)


def test_unknown_parameter_refused_before_running(workbook):
    runs = workbook.parent / "runs"
    before = sorted(runs.iterdir()) if runs.exists() else []
    p = cli("run", "--profile", "smoke", "-p", "train.epoch=[3]", settings=workbook)
    assert p.returncode == 2
    assert "unknown parameter 'train.epoch'" in p.stderr and "train.epochs" in p.stderr and "list" in p.stderr
    assert (sorted(runs.iterdir()) if runs.exists() else []) == before      # nothing ran


@pytest.mark.parametrize("arg,msg", [
    ("ingest.mode=RGBA", "ingest.mode = 'RGBA': accepts one of L, RGB"),
    ("train.epochs=[1.5]", "train.epochs = [1.5]: accepts whole numbers"),
    ("train.epochs=[0]", "train.epochs = [0]: accepts numbers at least 1"),
    ("train.lr=[1e999]", "train.lr = [inf]: accepts finite numbers"),
    ("train.lr=[-0.1]", "train.lr = [-0.1]: accepts numbers above 0"),
    ("train.batch_size=[]", "train.batch_size = []: accepts a non-empty list"),
    ("ingest.test_frac=1.5", "ingest.test_frac = 1.5: accepts numbers below 1"),
    ("train.strategy=dpp", "train.strategy = 'dpp': accepts one of auto, ddp"),
    ("ingest.source=imagefolder:/no/such/folder", "/no/such/folder is not a folder"),
    ("epochs=5", "did you mean [5]?")])
def test_bad_values_refused_before_running(workbook, arg, msg):
    runs = workbook.parent / "runs"
    before = sorted(runs.iterdir()) if runs.exists() else []
    p = cli("run", "--profile", "smoke", "-p", arg, settings=workbook)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert (sorted(runs.iterdir()) if runs.exists() else []) == before      # no run folder for a refused run


def test_fractions_summing_to_one_refused(workbook):
    p = cli("run", "--profile", "smoke", "-p", "ingest.val_frac=0.5", "-p", "ingest.test_frac=0.5", settings=workbook)
    assert p.returncode == 2 and "val_frac + test_frac must be below 1" in p.stderr


def test_constraints_shown_by_params_and_papermill():
    p = subprocess.run([str(BIN / "papermill"), "--help-notebook", str(REPO / "nbs/pipelines/train.ipynb")],
                       capture_output=True, text=True)
    assert "{non-empty; int; at least 1}" in p.stdout and "{one of grid, random}" in p.stdout


@pytest.mark.parametrize("arg,msg", [("train.trials=many", "train.trials is int"),
                                     ("ingest.skip_bad=perhaps", "ingest.skip_bad is bool"),
                                     ("ingest.val_frac=[0.1]", "ingest.val_frac is float"),
                                     ("nonsense", "key=value")])
def test_wrong_type_refused(workbook, arg, msg):
    p = cli("run", "--profile", "smoke", "-p", arg, settings=workbook)
    assert p.returncode == 2 and msg in p.stderr, p.stderr


def test_register_to_production_refused_before_running(workbook):
    runs = workbook.parent / "runs"
    before = sorted(runs.iterdir()) if runs.exists() else []
    p = cli("run", "--profile", "smoke", "-p", "register.alias=production", settings=workbook)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "register.alias = 'production'" in p.stderr and "mlops-nb release" in p.stderr and "application test" in p.stderr
    assert (sorted(runs.iterdir()) if runs.exists() else []) == before      # no run folder, no version left behind


def test_unknown_profile_refused(workbook):
    p = cli("run", "--profile", "huge", settings=workbook)
    assert p.returncode == 2 and "unknown profile 'huge'" in p.stderr and "smoke" in p.stderr


def test_papermill_help_notebook_lists_parameters():
    p = subprocess.run([str(BIN / "papermill"), "--help-notebook", str(REPO / "nbs/pipelines/train.ipynb")],
                       capture_output=True, text=True)
    assert p.returncode == 0
    assert "epochs: list" in p.stdout and "learning rates to try" in p.stdout


def failing_pipelines(tmp_path, stage="train", error="RuntimeError('injected failure: no_such_strategy')"):
    "A copy of the stage notebooks in which `stage` raises `error` inside its Stage block; returns its folder."
    import shutil
    out = tmp_path / "pipelines"
    shutil.copytree(REPO / "nbs/pipelines", out)
    nb = nbformat.read(out / f"{stage}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if f'with Stage("{stage}"' in c.source)
    head, sep, rest = cell.source.partition(" as st:\n")
    cell.source = head + sep + f"    raise {error}\n" + rest
    nbformat.write(nb, out / f"{stage}.ipynb")
    return out


def test_failing_stage_stops_the_run(tmp_path):
    settings = make_workbook(tmp_path)
    settings.write_text(settings.read_text().replace(str(REPO / "nbs" / "pipelines"), str(failing_pipelines(tmp_path))))
    p = cli("run", "--profile", "smoke", settings=settings, env={"WANDB_MODE": "offline"})
    assert p.returncode == 1
    rec = run_record(settings, p)
    assert rec["status"] == "failed" and rec["error"]["stage"] == "train"
    assert "no_such_strategy" in rec["error"]["message"]
    ingest, train, *later = rec["stages"]
    assert ingest["status"] == "succeeded" and train["status"] == "failed" and {s["status"] for s in later} == {"pending"}
    assert train["outputs"] == {} and "no_such_strategy" in train["error"]
    assert list((tmp_path / "wandb_dir" / "wandb").glob(f"offline-run-*-{train['wandb']['id']}"))    # referenced from run.json
    p = cli("sync", rec["run_id"], "--dry-run", settings=settings)            # the failed stage's W&B run is synced too
    assert p.returncode == 0 and f"{rec['run_id']} train: wandb sync" in p.stdout and train["wandb"]["dir"] in p.stdout
    run_dir = tmp_path / "runs" / rec["run_id"]
    nb = nbformat.read(run_dir / "02_train.ipynb", as_version=4)      # the failing cell is kept, with its error
    errs = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errs and "no_such_strategy" in errs[0]["evalue"]
    assert (run_dir / "02_train.html").is_file() and not (run_dir / "03_evaluate.ipynb").exists()
    store = Store(tmp_path / "store")
    assert store.partials() == []                                    # no half-written artifact
    objects = {p.name for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file()}
    shards = {sh["digest"].split(":")[1] for sh in json.loads(store.read_bytes(ingest["outputs"]["dataset"]))["shards"]}
    assert objects == {d.split(":")[1] for d in ingest["outputs"].values()} | shards   # only what ingest finished: index, manifest, shards


def test_ddp_two_cpu_processes(workbook):
    p = cli("run", "--profile", "smoke", "-p", "train.devices=2", "-p", "train.strategy=ddp", settings=workbook)
    assert p.returncode == 0, p.stderr
    rec = run_record(workbook, p)
    assert rec["status"] == "succeeded"
    assert rec["metrics"]["train/world_size"] == 2
    assert rec["metrics"]["test/accuracy"] > 0.3


def test_pipeline_notebooks_nbval(smoke):
    "nbval (lax) on the pipeline notebooks, opened by hand: they pick up the smoke run's outputs, and record nothing."
    settings, _, _ = smoke
    from mlops_nb.build.registry import Registry
    s = load_settings(settings)
    reg = Registry(s.registry, Store(s.store))
    history, aliases = reg.history("digits-cnn"), reg.aliases("digits-cnn")
    wandb_runs = lambda: sorted((settings.parent / "wandb_dir").rglob("offline-run-*"))
    before = wandb_runs()
    nbs = [str(REPO / "nbs/pipelines" / f"{s}.ipynb") for s in STAGES]
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "offline"}     # W&B on, yet nothing is written
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", *nbs],
                       capture_output=True, text=True, env=env, cwd=settings.parent, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:]
    assert " passed" in p.stdout
    assert reg.history("digits-cnn") == history and reg.aliases("digits-cnn") == aliases   # the registry is untouched
    assert wandb_runs() == before                                                          # and the W&B project too


def test_stages_by_hand_chain_and_say_what_they_used(tmp_path):
    "papermill by hand in a fresh workbook: ingest, then train on what was just ingested; -p passes lists and dicts as text."
    settings = make_workbook(tmp_path)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    pm = lambda stage, *a: subprocess.run([str(BIN / "papermill"), str(REPO / "nbs/pipelines" / f"{stage}.ipynb"),
                                           str(tmp_path / f"{stage}.out.ipynb"), *a], capture_output=True, text=True,
                                          env=env, cwd=tmp_path, timeout=300)
    p = pm("ingest", "-p", "image_size", "12", "-p", "seed", "5")              # not the dataset any run made
    assert p.returncode == 0, p.stderr[-3000:]
    made = json.loads((tmp_path / "runs" / "by-hand" / "ingest.outputs.json").read_text())["outputs"]["dataset"]
    p = pm("train", "-p", "lr", "[0.02]", "-p", "epochs", "[1]", "-p", "channels", "[4]")
    assert p.returncode == 0, p.stderr[-3000:]
    out = (tmp_path / "train.out.ipynb").read_text()
    assert f"input dataset: {made}" in out and "ingest run by hand at" in out     # the digest it used, and from where
    model = json.loads((tmp_path / "runs" / "by-hand" / "train.outputs.json").read_text())
    assert model["params"]["lr"] == [0.02] and model["inputs"] == {"dataset": made}
    p = pm("train", "-p", "inputs", json.dumps({"dataset": made}), "-p", "epochs", "[1.5]")
    assert p.returncode != 0 and "train.epochs = [1.5]: accepts whole numbers" in p.stderr + (tmp_path / "train.out.ipynb").read_text()
    p = pm("evaluate", "-p", "inputs", json.dumps({"dataset": made, "model": model["outputs"]["model"]}))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "given (inputs parameter)" in (tmp_path / "evaluate.out.ipynb").read_text()
    assert not list((tmp_path / "runs").glob("*/run.json"))                      # no pipeline run was needed, or made


def test_unknown_parameter_is_one_line_with_close_matches(workbook):
    "issue 23 item 15: the README promises one line, not the 27-line table."
    p = cli("run", "--profile", "smoke", "-p", "train.epochz=3", settings=workbook)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "mlops-nb run: error: unknown parameter 'train.epochz' (from -p): did you mean train.epochs (list)? "
        "`mlops-nb params` lists them all"], p.stderr


def test_a_value_of_the_wrong_form_gets_an_example_of_the_right_one(workbook):
    p = cli("run", "--profile", "smoke", "-p", "train.epochs=abc", settings=workbook)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "train.epochs is list; got 'abc': write a list in brackets, e.g. -p train.epochs=[" in p.stderr, p.stderr
