"""A lease waiting for cores says which run holds them and for how long (issue 23 item 17)."""
import pytest
import os, subprocess, sys, time
from mlops_nb.core.cores import machine_cores, relay

HOLD = ("import sys, time\nfrom mlops_nb.core.cores import core_lease, machine_cores\n"
        "with core_lease(threads=machine_cores(), what=sys.argv[1], echo=lambda m: print(m, file=sys.stderr, flush=True), "
        "say_after=0.2, say_every=0.3):\n    print('held', flush=True); time.sleep(60)")


def test_a_waiting_lease_names_the_run_that_holds_the_cores(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_NB_LOCK_DIR", str(tmp_path))
    start = lambda run, what: subprocess.Popen([sys.executable, "-c", HOLD, what], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True, env={**os.environ, "MLOPS_NB_RUN_ID": run})
    holder = start("20260101-000000-beef", "a training trial")
    waiter = None
    try:
        assert holder.stdout.readline().strip() == "held"
        relayed = []
        with relay("20260101-000000-cafe", relayed.append, after=0, every=0.3, poll=0.05):
            waiter = start("20260101-000000-cafe", "the latency check")
            lines = [waiter.stderr.readline() for _ in range(2)]           # said while it waits, one after the other
            deadline = time.time() + 30
            while not relayed and time.time() < deadline: time.sleep(0.05)
        names = f"run 20260101-000000-beef (pid {holder.pid}, a training trial) holds {machine_cores()} for "
        for line in lines + relayed[:1]:
            assert line.startswith("waiting ") and "for cores before the latency check: " in line and names in line, line
        holder.kill(); holder.wait()
        assert waiter.stdout.readline().strip() == "held"                   # the holder gone, the waiter has them
    finally:
        for p in (holder, waiter):
            if p: p.kill(); p.wait()


@pytest.mark.slow      # about 25 s: two runs contending for the cores: `make test-slow`, keeping `make test` under 15 minutes
def test_the_runner_says_on_the_terminal_what_a_stage_waits_for(tmp_path, monkeypatch):
    "A run whose stage waits for cores held by another run says so on the terminal, naming the holder (it said nothing for 310 s)."
    from conftest import BIN, make_workbook
    monkeypatch.setenv("MLOPS_NB_LOCK_DIR", str(tmp_path / "locks"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "a training trial"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env={**os.environ, "MLOPS_NB_RUN_ID": "20260101-000000-beef"})
    run = None
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {**os.environ, "MLOPS_NB_SETTINGS": str(make_workbook(tmp_path)), "WANDB_MODE": "disabled"}
        run = subprocess.Popen([str(BIN / "mlops-nb"), "run", "--profile", "smoke"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        deadline, out = time.time() + 180, []
        while time.time() < deadline and not any("waiting" in l for l in out):
            line = run.stdout.readline()
            if not line: break
            out.append(line)
        holder.kill(); holder.wait()                                         # the other run ends: this one goes on
        rest, _ = run.communicate(timeout=300)
        said = next((l for l in out if "waiting" in l), "")
        assert said.startswith("[") and " waiting " in said and "for cores before " in said, out
        assert "run 20260101-000000-beef" in said and "a training trial" in said, said
        assert run.returncode == 0, "".join(out) + rest
    finally:
        for p in (holder, run):
            if p and p.poll() is None: p.kill(); p.wait()
