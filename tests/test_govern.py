"""The closed loop, offline on one machine: a released model is served; clean traffic with labels raises no alert; a
shift that hurts two classes (their pictures inverted) raises drift, accuracy and recall-gap alerts naming the weakest class;
`govern` then retrains on data that adds the labelled production predictions. With `retrain = approve` it stops for a
reviewer; with `auto` and a gate the new model cannot meet, the gates refuse and production stays; with `auto` and the
workbook's gates, the new version is released and the running service swaps to it without a failed request. `--dry-run`
changes nothing; the audit trail and the new version's lineage name the alert, the run and the production data."""
import configparser, json
from pathlib import Path
from conftest import cli, make_workbook
from test_serve import start, stop
from test_release import Load


def configure(settings: Path, **values):
    "Set `section.key` values (given as section__key=value) in a settings file."
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    for k, v in values.items():
        sec, key = k.split("__")
        if not cp.has_section(sec): cp.add_section(sec)
        cp[sec][key] = str(v)
    with open(settings, "w") as f: cp.write(f)


def figures(settings, p) -> dict:
    "The figures a `mlops-nb monitor` run recorded."
    from mlops_nb.core.config import load_settings
    from mlops_nb.core.store import Store
    assert p.returncode == 0, p.stderr
    rec = json.loads((Path(p.stdout.split()[1]).parent / "run.json").read_text())
    return json.loads(Store(load_settings(settings).store).read_bytes(rec["stages"][0]["outputs"]["monitor"]))


def kill_in(settings: Path, args: list, stage: str, after: float = 1.0) -> dict:
    "Start `mlops-nb ARGS`, kill -9 it `after` seconds into the stage `stage` of the run it starts; the killed run's record."
    import os, signal, subprocess, time
    from conftest import BIN
    runs = Path(settings).parent / "runs"
    before = {p.parent.name for p in runs.glob("*/run.json")}
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([str(BIN / "mlops-nb"), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, rec = time.time() + 300, None
        while time.time() < deadline and proc.poll() is None:
            new = [p for p in runs.glob("*/run.json") if p.parent.name not in before]
            if new and any(st["name"] == stage and st["status"] == "running" for st in json.loads(new[0].read_text())["stages"]):
                rec = json.loads(new[0].read_text()); break
            time.sleep(0.05)
        assert rec is not None, f"{args} never ran its {stage} stage"
        time.sleep(after)
        os.kill(proc.pid, signal.SIGKILL); proc.wait(30)
    finally:
        try: os.killpg(proc.pid, signal.SIGKILL)           # its kernels, if still there
        except ProcessLookupError: pass
    return json.loads((runs / rec["run_id"] / "run.json").read_text())


def intact(settings: Path):
    "The workbook's databases pass integrity_check."
    import sqlite3
    for db in ("lineage.db", "registry.db", "governance.db", "predictions.db"):
        c = sqlite3.connect(Path(settings).parent / db)
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
        c.close()


def test_the_closed_loop(tmp_path_factory):
    settings = make_workbook(tmp_path_factory.mktemp("loop"))
    configure(settings, serve__client_time="true", serve__follow_ms="100", gates__min_accuracy="0.5", gates__max_recall_gap="1",
              monitor__min_accuracy="0.87", govern__retrain="off")
    first = cli("run", "--profile", "smoke", settings=settings)
    assert first.returncode == 0, first.stderr
    assert cli("approve", "digits-cnn@1", "--why", "read the QA report", settings=settings).returncode == 0
    assert cli("release", "digits-cnn@1", "--why", "first release", settings=settings).returncode == 0

    url, p = start(settings)
    try:
        sim = cli("simulate", "--url", url, "--n", "179", "--days", "1", "--feedback-rate", "1", settings=settings)
        assert sim.returncode == 0, sim.stderr
        killed = kill_in(settings, ["monitor", "--since", "2d"], "monitor", after=0.5)     # kill -9 of monitor: the next one runs
        assert cli("show", killed["run_id"], settings=settings).stdout.split()[2] == "interrupted"
        clean = figures(settings, cli("monitor", "--since", "2d", settings=settings))
        assert clean["status"] == "ok", [c for c in clean["total"]["checks"] if c["status"] != "ok"]

        shift = cli("simulate", "--url", url, "--n", "800", "--drift", "invert", "--severity", "1", "--only-class", "3",
                    "--only-class", "5", "--feedback-rate", "1", "--seed", "2", settings=settings)   # a camera that inverts 3s and 5s
        assert shift.returncode == 0 and "on class 3, 5 only" in shift.stdout, shift.stderr
        mon = cli("monitor", "--since", "2d", settings=settings)
        hurt = figures(settings, mon)
        st = {c["check"]: c for c in hurt["total"]["checks"]}
        assert st["recall gap"]["status"] == "ALERT" and st["recall gap"]["metric"] in ("recall_gap:3", "recall_gap:5"), st["recall gap"]
        assert st["accuracy"]["status"] == "ALERT" and "on 979 labels" in st["accuracy"]["detail"], st["accuracy"]
        assert "ALERT" in (st["input drift"]["status"], st["output drift"]["status"]), st
        alerts = json.loads(cli("alerts", "--json", settings=settings).stdout)
        assert {"recall gap", "accuracy"} <= {a["check_name"] for a in alerts}

        # --dry-run: every step, nothing changed; retrain = off: nothing retrains (and that is on record)
        dry = cli("govern", "--dry-run", settings=settings)
        assert dry.returncode == 0 and dry.stdout.strip() == "dry-run" and "nothing retrains" in dry.stderr
        off = cli("govern", settings=settings)
        assert off.returncode == 0 and off.stdout.strip() == "off"
        configure(settings, govern__retrain="approve")
        dry = cli("govern", "--dry-run", settings=settings)
        assert "would: retrain" in dry.stderr and "'digits+predictions:digits-cnn'" in dry.stderr
        assert "latest v1" in cli("registry", "ls", settings=settings).stdout                 # nothing registered

        # approve: retrain on the original data plus the labelled production predictions, then stop for a reviewer;
        # a govern killed (kill -9) mid-retrain first: the next one says so, retrains reusing what it completed
        killed = kill_in(settings, ["govern"], "train", after=1.0)
        assert [st["status"] for st in killed["stages"]][:2] == ["succeeded", "running"]
        intact(settings)
        assert "latest v1" in cli("registry", "ls", settings=settings).stdout and "production->v1" in cli("registry", "ls", settings=settings).stdout
        g = cli("govern", settings=settings, timeout=900)
        assert g.returncode == 0 and g.stdout.split() == ["awaiting-approval", "digits-cnn@2"], (g.stdout, g.stderr)
        assert "mlops-nb approve digits-cnn@2" in g.stderr and "was interrupted; retraining again" in g.stderr
        import re
        rid = re.search(r"^run (\S+)  \(retrain profile\)", g.stderr, re.M).group(1)
        resumed = json.loads((settings.parent / "runs" / rid / "run.json").read_text())
        assert resumed["stages"][0]["cached_from"] == killed["run_id"]

        # auto, and a gate the new model cannot meet: refused, production stays (the run is the cache's: same data)
        configure(settings, govern__retrain="auto", gates__min_accuracy="0.999")
        g = cli("govern", settings=settings, timeout=900)
        assert g.returncode == 1 and g.stdout.split() == ["refused", "digits-cnn@2"], (g.stdout, g.stderr)
        assert "production stays digits-cnn@1" in g.stderr
        assert "production->v1" in cli("registry", "ls", settings=settings).stdout

        # auto with the workbook's gates: approved in the policy's name, released; the service swaps under load
        configure(settings, gates__min_accuracy="0.5")
        import numpy as np
        load = Load(url, np.zeros((1, 8, 8), np.uint8))
        try:
            g = cli("govern", settings=settings, timeout=900)
            assert g.returncode == 0 and g.stdout.split() == ["released", "digits-cnn@2"], (g.stdout, g.stderr)
            load.until(2, timeout=30)
        finally: load.close()
        assert not load.errors, load.errors[:3]
        assert {v for _, v in load.seen} == {1, 2}
    finally: stop(p)

    trail = cli("audit", "digits-cnn", "--json", settings=settings)
    acts = [e["action"] for e in json.loads(trail.stdout)]
    for a in ("alert (critical)", "retrain skipped", "retrain started", "retrain interrupted", "retrained", "awaiting approval",
              "release refused", "approved", "released", "set production"):
        assert a in acts, (a, acts)
    assert acts.count("retrain started") == 4 and acts.count("retrain interrupted") == 1     # killed, approve, refused, released
    assert acts.index("retrain started") < acts.index("retrained") < acts.index("release refused") < acts.index("released")
    lin = json.loads(cli("audit", "digits-cnn@2", "--json", settings=settings).stdout)
    assert lin["data"]["source"] == "digits+predictions:digits-cnn" and lin["data"]["production_predictions"]["rows"] == 979
    assert lin["caused_by"]["monitor_run"] == mon.stdout.split()[0] and "recall gap" in lin["caused_by"]["why"]
    assert lin["approval"]["who"] == "govern (retrain = auto)" and any(g["alias"] == "production" for g in lin["gates"])
    assert any(c["role"] == "primary" and c["predictions"] > 0 for c in lin["served"])
    text = cli("audit", "digits-cnn@2", settings=settings).stdout
    assert "979 labelled production predictions" in text and "cause    monitoring run" in text
