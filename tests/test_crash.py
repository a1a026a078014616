"""kill -9 of `mlops-nb run` in the middle of a stage."""
import calendar, json, os, signal, sqlite3, subprocess, time
import pytest
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
        t_kill = time.time()
        time.sleep(3)

        p = cli("show", rec["run_id"], settings=settings)   # any command that reads runs notices the dead runner
        assert p.returncode == 0 and p.stdout.split()[2] == "interrupted", p.stdout
        ended = json.loads(rj.read_text())["ended"]
        assert calendar.timegm(time.strptime(ended, "%Y-%m-%dT%H:%M:%SZ")) <= t_kill + 1   # its last sign of life, not now
        p = cli("runs", settings=settings)
        assert p.returncode == 0
        assert any(l.startswith(rec["run_id"]) and "interrupted" in l for l in p.stdout.splitlines()), p.stdout
        rec = json.loads(rj.read_text())
        assert rec["status"] == "interrupted"
        assert [s["status"] for s in rec["stages"]] == ["succeeded", "interrupted", "pending", "pending", "pending", "pending"]
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


def _kernels(pid):
    "The live kernel processes under `pid`."
    import psutil
    ks = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(c.cmdline()): ks.append(c)
        except psutil.Error: pass                     # gone, or a kernel being shut down
    return ks


def _busiest_kernel(pid):
    "The live kernel process under `pid` that has used the most CPU (None if none)."
    import psutil
    def cpu(c):
        try: return sum(c.cpu_times()[:2])
        except psutil.Error: return -1
    return max(_kernels(pid), key=cpu, default=None)


def test_dead_kernel_fails_the_stage_cleanly(tmp_path):
    "kill -9 of the stage's kernel (as the OOM killer would): the stage and the run are failed, with one line and a lineage row."
    import psutil
    settings = make_workbook(tmp_path)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([str(BIN / "mlops-nb"), "run", "--profile", "smoke", "-p", "train.epochs=[300]"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline, kernel = time.time() + 180, None
        while time.time() < deadline and kernel is None:
            found = list((tmp_path / "runs").glob("*/run.json"))
            if found and json.loads(found[0].read_text())["stages"][1]["status"] == "running":
                time.sleep(4)                       # inside the training cell; ingest's kernel has stopped by now
                kernel = _busiest_kernel(proc.pid)  # train's: it is the one computing
            time.sleep(0.2)
        assert kernel is not None, "train's kernel never started"
        kernel.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert "failed: stage train failed: the kernel died" in last and "02_train.ipynb" in last and "Traceback" not in err
    rec = json.loads(found[0].read_text())
    assert rec["status"] == "failed" and rec["error"]["stage"] == "train"
    assert [s["status"] for s in rec["stages"]] == ["succeeded", "failed", "pending", "pending", "pending", "pending"]
    db = sqlite3.connect(tmp_path / "lineage.db")
    assert db.execute("SELECT status FROM executions WHERE run_id=? AND stage='train'", (rec["run_id"],)).fetchone()[0] == "failed"
    assert db.execute("SELECT status FROM runs WHERE run_id=?", (rec["run_id"],)).fetchone()[0] == "failed"


def test_kernel_that_cannot_start(tmp_path):
    settings = make_workbook(tmp_path)
    settings.write_text(settings.read_text().replace("kernel = python3", "kernel = no-such-kernel"))
    p = cli("run", "--profile", "smoke", settings=settings)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "the kernel 'no-such-kernel' ([run] kernel in settings.ini) is not installed" in p.stderr.strip().splitlines()[-1]
    rec = run_record(settings, p)
    assert rec["status"] == "failed" and rec["error"]["stage"] == "ingest" and rec["stages"][0]["status"] == "failed"
    db = sqlite3.connect(tmp_path / "lineage.db")
    assert db.execute("SELECT status FROM executions WHERE run_id=? AND stage='ingest'", (rec["run_id"],)).fetchone()[0] == "failed"



def test_output_into_head_does_not_kill_the_run(smoke):
    "`mlops-nb run ... 2>&1 | head -1`: the reader leaves after one line; the run goes on and is recorded as it ended."
    settings, _, _ = smoke
    before = set((settings.parent / "runs").glob("*/run.json"))
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    p = subprocess.run(["bash", "-c", f"{BIN / 'mlops-nb'} run --profile smoke 2>&1 | head -1"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.stdout.startswith("run ") and len(p.stdout.splitlines()) == 1
    new = set((settings.parent / "runs").glob("*/run.json")) - before
    assert len(new) == 1
    rec = json.loads(new.pop().read_text())
    assert rec["status"] == "succeeded" and "BrokenPipe" not in json.dumps(rec)


def test_unusable_paths_are_one_line(tmp_path):
    "A corrupt database, or a runs folder that cannot be made: one line naming the path and the cause, no traceback."
    settings = make_workbook(tmp_path)
    (tmp_path / "lineage.db").write_bytes(b"this is not a database" * 100)
    p = cli("lineage", "sha256:ab", settings=settings)       # `runs` reads run folders only; lineage reads the database
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"mlops-nb lineage: error: the database {tmp_path / 'lineage.db'} cannot be used: file is not a database"]
    (tmp_path / "lineage.db").unlink()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    settings.write_text(settings.read_text().replace(str(tmp_path / "runs"), str(tmp_path / "blocker" / "runs")))
    p = cli("run", "--profile", "smoke", settings=settings)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert str(tmp_path / "blocker") in p.stderr and "Not a directory" in p.stderr


def _wait_for_stage(runs: Path, i: int, proc, timeout=180):
    "The run.json path once stage i is running (fails if the run ended first)."
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for rj in runs.glob("*/run.json"):
            try:
                if json.loads(rj.read_text())["stages"][i]["status"] == "running": return rj
            except (ValueError, KeyError): pass
        time.sleep(0.2)
    raise AssertionError(f"stage {i} never started")


def test_ctrl_c_is_one_line_and_leaves_nothing_behind(tmp_path):
    "Ctrl-C (SIGINT to the foreground process group) in the middle of training: one line, exit 130, run interrupted, "
    "no kernel left running, no temporary folder left behind."
    import psutil
    settings = make_workbook(tmp_path)
    tmp = tmp_path / "tmp"; tmp.mkdir()
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled", "TMPDIR": str(tmp)}
    proc = subprocess.Popen([str(BIN / "mlops-nb"), "run", "--profile", "smoke", "-p", "train.epochs=[300]"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True,          # its own process group, as a terminal gives a foreground job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # as an interactive shell does
    kernels = []
    try:
        rj = _wait_for_stage(tmp_path / "runs", 1, proc)
        time.sleep(5)                                    # inside the training cell
        kernels = _kernels(proc.pid)
        assert kernels, "no kernel running"
        assert any(tmp.glob("mlops-nb-*")), "the run made no temporary folder"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (proc.returncode, err)
    after = err.split("[2/6] train     running ...\n", 1)[1]
    assert "Traceback" not in err and len(after.strip().splitlines()) == 1, err
    assert "interrupted" in after
    rec = json.loads(rj.read_text())
    assert rec["status"] == "interrupted" and rec["stages"][1]["status"] == "interrupted", rec
    gone = psutil.wait_procs(kernels, timeout=15)[1]
    assert not gone, f"kernels still running: {gone}"
    left = [p.name for p in tmp.iterdir()]             # and the machine's core pool is not here: TMPDIR is not machine-wide
    assert left == [], left


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


@pytest.mark.slow                                    # two minutes together: `make test-slow`, keeping `make test` near 15 minutes
@pytest.mark.parametrize("left_mb", [0, 1])
def test_full_disk(tmp_path, left_mb):
    "A workbook on a disk that fills up: a run fails with one line naming the path and the cause; earlier runs stay "
    "readable; `runs` and `show` keep working; once there is room again, runs work."
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "64m"): pytest.skip("needs root and tmpfs to make a small disk")
    try:
        settings = make_workbook(disk)
        p = cli("run", "--profile", "smoke", settings=settings)
        assert p.returncode == 0, p.stderr
        first = run_record(settings, p)
        report = (disk / "runs" / first["run_id"] / "index.html").read_text()
        with open(disk / "filler", "wb") as f:           # fill the disk, leaving left_mb: the run fails before it starts, or in it
            try:
                while True: f.write(b"\0" * (1 << 20))
            except OSError: pass
            f.truncate(max(0, f.tell() - left_mb * (1 << 20)))
        p = cli("run", "--profile", "smoke", "--force", settings=settings)
        assert p.returncode in (1, 2) and "Traceback" not in p.stderr, p.stderr
        said = [l for l in p.stderr.splitlines() if "No space left on device" in l and ("failed" in l or "error" in l)]
        assert said and str(disk) in said[-1], p.stderr                 # the cause, and where
        for c in (["runs"], ["show", first["run_id"]]):  # readers of runs keep working
            q = cli(*c, settings=settings)
            assert q.returncode == 0 and "Traceback" not in q.stderr, (c, q.stderr)
            assert first["run_id"] in q.stdout, (c, q.stdout)
        q = cli("registry", "ls", settings=settings)     # SQLite in WAL mode cannot open on a full disk: one line says so
        assert q.returncode == 0 or ("registry.db" in q.stderr and "No space left on device" in q.stderr
                                     and len(q.stderr.strip().splitlines()) == 1), q.stderr
        assert json.loads((disk / "runs" / first["run_id"] / "run.json").read_text())["status"] == "succeeded"
        assert (disk / "runs" / first["run_id"] / "index.html").read_text() == report
        for rj in (disk / "runs").glob("*/run.json"): json.loads(rj.read_text())   # no run.json half written
        (disk / "filler").unlink()
        p = cli("run", "--profile", "smoke", "--force", settings=settings)
        assert p.returncode == 0, p.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
