"""Liveness of a run: the runner holds a lock on a file in its run folder for its whole life; any other command tests it.
A start time that moved (psutil counts from a boot time that can shift), a reused pid, a forked child: none misfires."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import BIN, make_workbook


HOLDER = r"""
import json, os, subprocess, sys, time
from mlops_nb.pipeline.runner import _me
me = _me(sys.argv[1])
exec_child = subprocess.Popen(["sleep", "60"], close_fds=False)     # an exec'd child: the lock's fd is close-on-exec
ready, said = os.pipe()
fork_child = os.fork()                                              # a forked child (a kernel forked from a zygote is one)
if fork_child == 0:                                                 # running: the at-fork hook has run in it
    os.write(said, b"1"); time.sleep(60); os._exit(0)
os.read(ready, 1)                                                   # (not before: a child not scheduled yet still holds
                                                                    # the lock, which a loaded machine showed)
print(json.dumps({"runner": me, "children": [exec_child.pid, fork_child]}), flush=True)
time.sleep(60)
"""


def test_a_dead_holder_reads_as_not_alive(tmp_path):
    "kill -9 of the lock's holder: its run reads as not alive at once, though the children it started live on."
    from mlops_nb.pipeline.runner import _alive
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "runner.lock")], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        info = json.loads(p.stdout.readline())
        runner = info["runner"]
        assert _alive(runner) and Path(runner["lock"]) == tmp_path / "runner.lock"
        assert _alive({**runner, "created": 0.0})          # the start time plays no part
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        assert all(Path(f"/proc/{c}").exists() for c in info["children"])    # still running, still holding what they inherited
        assert not _alive(runner)
    finally:
        os.killpg(p.pid, signal.SIGKILL)


def test_own_process_reads_as_alive(tmp_path):
    "The runner itself (another open of its lock in the same process) reads its run as alive; after release, as not."
    from mlops_nb.pipeline.runner import _me, _alive, _release
    me = _me(tmp_path / "runner.lock")
    assert _alive(me) and _alive(_me(tmp_path / "runner.lock"))          # taking the same lock twice is a no-op
    _release(me)
    assert not _alive(me)
    assert _alive({"pid": os.getpid(), "host": me["host"], "created": 0.0})   # a record from before locks: its pid is alive


# the runner records a start time 1.5 s off psutil's (what a shifted boot time does to a reader's view)
SKEWED_RUNNER = """
import sys, mlops_nb.pipeline.runner as p
_me = p._me
def skewed(*a, **k):
    r = _me(*a, **k); r["created"] = r.get("created", 0.0) - 1.5; return r
p._me = skewed
from mlops_nb.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow      # about 15 s: `make test-slow`, keeping `make test` under 15 minutes
def test_reads_beside_a_run_never_kill_it(tmp_path, monkeypatch, capsys):
    "A smoke run with a skewed start time in its record; 50 `runs` and `show` commands beside it: it succeeds, never interrupted."
    from mlops_nb.cli.main import main
    settings = make_workbook(tmp_path)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-c", SKEWED_RUNNER, "run", "--profile", "smoke"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline, rec = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None and rec is None:
            for rj in (tmp_path / "runs").glob("*/run.json"):
                rec = json.loads(rj.read_text())
            time.sleep(0.02)
        assert rec is not None and proc.poll() is None, "the run ended before it was seen running"
        monkeypatch.setenv("MLOPS_NB_SETTINGS", str(settings))
        seen = []
        for i in range(50):
            capsys.readouterr()
            if i % 10 == 9:              # a fresh process now and then, as a user types them
                p = subprocess.run([str(BIN / "mlops-nb"), "show", rec["run_id"]], env=env, capture_output=True, text=True)
                assert p.returncode == 0, p.stderr
                out = p.stdout
            else:
                assert main(["runs"] if i % 2 else ["show", rec["run_id"]]) == 0
                out = capsys.readouterr().out
            words = next(l for l in out.splitlines() if rec["run_id"] in l).split()
            seen.append(words[2] if words[0] == "run" else words[1])      # `show`: run ID STATUS; `runs`: ID STATUS
            tmp_gone = not Path(rec["tmp"]).is_dir()     # its kernels' temporary folder: removed only after its end is recorded
            status = json.loads((tmp_path / "runs" / rec["run_id"] / "run.json").read_text())["status"]
            assert status in ("running", "succeeded") and not (tmp_gone and status == "running"), (status, tmp_gone)
        assert proc.poll() is None, "the run ended before the 50 reads: they did not run beside it"
        out, errs = proc.communicate(timeout=600)
        assert proc.returncode == 0, errs
        assert set(seen) <= {"running", "succeeded"} and seen[0] == "running", seen
        assert json.loads((tmp_path / "runs" / rec["run_id"] / "run.json").read_text())["status"] == "succeeded"
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
