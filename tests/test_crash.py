"""kill -9 of `mlops-nb run` in the middle of a stage."""
import json, os, signal, sqlite3, subprocess, time
from pathlib import Path
from conftest import BIN, cli, make_workbook, run_record
from mlops_nb.store import Store


def test_kill_9_mid_stage(tmp_path):
    settings = make_workbook(tmp_path)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([str(BIN / "mlops-nb"), "run", "--profile", "smoke", "-p", "train.epochs=[300]"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, rec, rj = time.time() + 180, None, None
        while time.time() < deadline:
            found = list((tmp_path / "runs").glob("*/run.json"))
            if found:
                rj = found[0]; rec = json.loads(rj.read_text())
                if rec["stages"][1]["status"] == "running": break
            time.sleep(0.2)
        assert rec and rec["stages"][1]["status"] == "running", "train never started"
        time.sleep(6)                                   # inside the training cell
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        p = cli("runs", settings=settings)               # the next command notices the dead runner
        assert p.returncode == 0
        assert any(l.startswith(rec["run_id"]) and "interrupted" in l for l in p.stdout.splitlines()), p.stdout
        rec = json.loads(rj.read_text())
        assert rec["status"] == "interrupted"
        assert [s["status"] for s in rec["stages"]] == ["succeeded", "interrupted", "pending", "pending", "pending"]
        db = sqlite3.connect(tmp_path / "lineage.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT status FROM runs WHERE run_id=?", (rec["run_id"],)).fetchone()[0] == "interrupted"
        store = Store(tmp_path / "store")
        assert store.partials() == []                    # no half-written artifact
        stored = {p.name for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file()}
        assert stored == {d.split(":")[1] for d in rec["stages"][0]["outputs"].values()}

        p = cli("run", "--profile", "smoke", settings=settings)
        assert p.returncode == 0, p.stderr
        again = run_record(settings, p)
        assert again["stages"][0]["cached"] and again["stages"][0]["cached_from"] == rec["run_id"]   # completed stage reused
        assert not again["stages"][1]["cached"]
    finally:
        try: os.killpg(proc.pid, signal.SIGKILL)           # the orphaned kernel, if it is still there
        except ProcessLookupError: pass
