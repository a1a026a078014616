"""Crashes: kill -9 of `mlops-nb run` in each stage, a dead or missing kernel, a closed pipe, Ctrl-C, unusable paths, a full disk."""
import calendar, json, os, signal, sqlite3, subprocess, time
import pytest
from pathlib import Path
from conftest import BIN, cli, make_workbook, run_record
from mlops_nb.core.store import Store


STAGE_NAMES = ["ingest", "train", "evaluate", "package", "register", "apptest"]


def _intact(root: Path):
    "Every database of the workbook passes integrity_check; every stored object hashes to its name; no alias points nowhere."
    for name in ("lineage.db", "registry.db"):
        if (root / name).exists():
            db = sqlite3.connect(root / name)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", name
            if name == "registry.db":
                assert db.execute("SELECT COUNT(*) FROM aliases a LEFT JOIN versions v ON a.name=v.name AND a.version=v.version "
                                  "WHERE v.version IS NULL").fetchone()[0] == 0       # no alias half-moved
            db.close()
    store = Store(root / "store")
    for obj in (root / "store" / "objects").rglob("*"):
        if obj.is_file(): store.path("sha256:" + obj.name)                         # raises on a torn or changed object


def _leftovers(root: Path) -> list:
    "Live processes working for the workbook under `root` (its settings in their environment): kernels, zygote, services."
    import psutil
    out = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE and \
                    p.environ().get("MLOPS_NB_SETTINGS", "").startswith(str(root)): out.append(p)
        except psutil.Error: pass
    return out


def test_kill_9_in_every_stage_then_resume(tmp_path):
    "kill -9 of `mlops-nb run` inside each stage in turn; each next run resumes from what the killed one completed."
    settings = make_workbook(tmp_path)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    killed, runs, passed = {}, [], set()                   # stage -> run id killed in it; every run started; stages run past
    delay = [0.3, 1.0, 1.0, 1.0, 0.2, 1.0]                 # seconds into each stage; halved when a kill lands outside it
    for attempt in range(12):
        todo = [n for n in STAGE_NAMES if n not in killed]
        if not todo: break
        k = STAGE_NAMES.index(todo[0])
        force = ["--force-stage", todo[0]] if todo[0] in passed else []   # it succeeded under a kill meant for it: cached now
        proc = subprocess.Popen([str(BIN / "mlops-nb"), "run", "--profile", "smoke", *force], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline, rj, rec = time.time() + 240, None, None
            while time.time() < deadline and proc.poll() is None:
                new = [r for r in (tmp_path / "runs").glob("*/run.json") if r.parent.name not in runs]
                if new:
                    rj = new[0]
                    try: rec = json.loads(rj.read_text())
                    except ValueError: rec = None                   # never: run.json is written atomically
                    assert rec is not None, "run.json was read half-written"
                    if rec["stages"][k]["status"] == "running": break
                time.sleep(0.02)
            assert rec is not None and proc.poll() is None, f"the run ended before {STAGE_NAMES[k]} was seen running"
            time.sleep(delay[k])                                    # inside the stage (register takes about 0.5 s)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            t_kill = time.time()
        finally:
            try: os.killpg(proc.pid, signal.SIGKILL)            # its orphaned kernel, if still there
            except ProcessLookupError: pass
        runs.append(rec["run_id"])
        deadline = time.time() + 20                             # nothing of it lives on: not its kernel, nor apptest's service
        while (left := _leftovers(tmp_path)) and time.time() < deadline: time.sleep(0.2)
        assert not left, [p.cmdline() for p in left]
        p = cli("show", rec["run_id"], settings=settings)       # any command that reads runs notices the dead runner
        assert p.returncode == 0 and p.stdout.split()[2] == "interrupted", p.stdout
        rec = json.loads(rj.read_text())
        assert rec["status"] == "interrupted"
        ended = calendar.timegm(time.strptime(rec["ended"], "%Y-%m-%dT%H:%M:%SZ"))
        assert ended <= t_kill + 1                              # its last sign of life, not when someone looked
        hit = [s["name"] for s in rec["stages"] if s["status"] == "interrupted"]
        assert len(hit) <= 1, rec["stages"]
        i = STAGE_NAMES.index(hit[0]) if hit else sum(s["status"] == "succeeded" for s in rec["stages"])
        assert all(s["status"] == "succeeded" for s in rec["stages"][:i]) and all(s["status"] == "pending" for s in rec["stages"][i + 1:])
        if hit: killed.setdefault(hit[0], rec["run_id"])
        if not hit or hit[0] != STAGE_NAMES[k]:                 # between two stages, or in a later one: also fine, tried again
            delay[k] /= 2
            if rec["stages"][k]["status"] == "succeeded": passed.add(STAGE_NAMES[k])
        _intact(tmp_path)
        db = sqlite3.connect(tmp_path / "lineage.db")
        assert db.execute("SELECT status FROM runs WHERE run_id=?", (rec["run_id"],)).fetchone()[0] == "interrupted"
    assert sorted(killed) == sorted(STAGE_NAMES), killed

    p = cli("runs", settings=settings)
    assert p.returncode == 0 and sum("interrupted" in l for l in p.stdout.splitlines()) == len(runs), p.stdout
    p = cli("run", "--profile", "smoke", settings=settings)
    assert p.returncode == 0, p.stderr
    done = run_record(settings, p)
    assert [s["status"] for s in done["stages"]] == ["succeeded"] * 6
    assert [s["cached"] for s in done["stages"]] == [True] * 5 + [False]       # resumed: only the stage killed last runs again
    assert Store(tmp_path / "store").partials() == []           # the next run cleaned up any torn write
    _intact(tmp_path)
    reg = sqlite3.connect(tmp_path / "registry.db")
    assert reg.execute("SELECT name, version FROM versions").fetchall() == [("digits-cnn", 1)]     # registered once, lost nothing
    assert reg.execute("SELECT name, alias, version FROM aliases").fetchall() == [("digits-cnn", "staging", 1)]
    assert reg.execute("SELECT passed FROM apptest_verdicts ORDER BY id DESC LIMIT 1").fetchone()[0] == 1   # its verdict, kept


def _kernels(pid):
    "The live kernel processes under `pid`: started as ipykernel, or forked by the runner's zygote (not the zygote itself)."
    import psutil
    ks = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if c.status() == psutil.STATUS_ZOMBIE: continue
            if "ipykernel" in " ".join(c.cmdline()) or "zygote_main" in " ".join(c.parent().cmdline()): ks.append(c)
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
        kernels = psutil.Process(proc.pid).children(recursive=True)     # and every other process of the run's (its zygote)
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
