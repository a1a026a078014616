"""Load and concurrency. The service held under load by wrk with two releases and a rollback during it (bench/soak.py:
12 s in `make test`, the 60 s run in `make test-slow`, the soak in `make bench`): no failed request, memory flat, one log
row per answered request. And 8 pipeline runs at once, beside a service answering predictions and labels while a
promoter moves an alias: no run, version, history row, prediction or label lost."""
import json, os, random, subprocess, sqlite3, sys, threading, time
from http.client import HTTPConnection
import pytest
from conftest import BIN, REPO, cli, make_workbook, run_record
from test_serve import start, stop


def soak(settings, tmp_path, *args) -> dict:
    "bench/soak.py's figures for the workbook at `settings`."
    out = tmp_path / "soak.json"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--settings", str(settings), "--json", str(out), *args],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_MODE": "disabled"})
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(out.read_text())


def held(f: dict):
    assert f["failed"] == 0 and f["requests"] > 1000, f                       # no failed request
    assert f["answered"] == f["logged"] and f["integrity"] == "ok", f           # one log row per answered request
    assert [w for _, w, _ in f["moves"]] == ["release", "release", "rollback"] and f["swaps"] == 3, f
    assert f["served_at_end"] == [f["production_at_end"]] == [f["moves"][0][2]], f   # rolled back to the first release
    assert f["answered"] - f["requests"] in range(0, 4 * 2 + 1), f             # wrk's count: all but those in flight at its end


@pytest.mark.slow      # about 13 s of load; the load test of every apptest stays in make test: `make test-slow`, keeping `make test` under 15 minutes
def test_a_short_soak(smoke, tmp_path):
    held(soak(smoke[0], tmp_path, "--quick"))


@pytest.mark.slow
def test_a_minute_under_load_with_two_releases_and_a_rollback(smoke, tmp_path):
    f = soak(smoke[0], tmp_path, "--seconds", "60")
    held(f)
    assert f["rss_growth"] < 0.10, f                                            # memory flat after the warm-up
    print(f"60 s: {f['requests']} requests, {f['rps']:.0f} req/s, p99 {f['p99']:.2f} ms, RSS {f['rss_warm_mb']} -> "
          f"{f['rss_end_mb']} MB ({f['rss_growth']:+.1%})")


class Writers:
    "Clients that each send a prediction, then its label, until stopped: the request ids and labels acknowledged."
    def __init__(self, url, clients=2):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.stop, self.acked, self.labels, self.errors = threading.Event(), [], [], []
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(clients)]
        for t in self.threads: t.start()

    def call(self, c, path, body):
        c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        r = c.getresponse(); data = r.read()
        if r.status != 200: raise AssertionError((path, r.status, data[:200]))
        return json.loads(data)

    def run(self, k):
        c, rng, n = HTTPConnection(self.host, int(self.port), timeout=30), random.Random(k), 0
        while not self.stop.is_set():
            try:
                rid = self.call(c, "/v1/predict", {"inputs": [[rng.randrange(17) for _ in range(64)]]})["request_id"]
                self.acked.append(rid)
                self.call(c, "/v1/feedback", {"request_id": rid, "label": str(rng.randrange(10))})
                self.labels.append(rid)
            except Exception as e:
                self.errors.append(repr(e)); c.close(); c = HTTPConnection(self.host, int(self.port), timeout=30)
            n += 1
            time.sleep(0.01)                                                    # the runs need the cores more

    def close(self):
        self.stop.set()
        for t in self.threads: t.join(30)


@pytest.mark.slow
def test_eight_runs_promotions_and_labels_at_once(tmp_path):
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    settings = make_workbook(tmp_path)
    first = cli("run", "--profile", "smoke", settings=settings)
    assert first.returncode == 0, first.stderr
    url, server = start(settings)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"}
    runs = [subprocess.Popen([str(BIN / "mlops-nb"), "run", "--profile", "smoke", "-p", f"train.seed={k}"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) for k in range(1, 9)]
    writers, moved, stop_promoting = Writers(url), [], threading.Event()

    def promote():                                                              # moves `canary` among the versions there are
        reg, rng = registry_for(load_settings(settings)), random.Random(0)
        while not stop_promoting.is_set():
            vs = [v["version"] for v in reg.versions("digits-cnn")]
            m = reg.set_alias("digits-cnn", "canary", rng.choice(vs), "concurrency test")
            if m["changed"]: moved.append(m["to"])
            time.sleep(0.2)
        reg.close()
    promoter = threading.Thread(target=promote); promoter.start()
    try:
        outs = [p.communicate(timeout=1200) for p in runs]
    finally:
        stop_promoting.set(); promoter.join(60); writers.close()
        for p in runs:
            if p.poll() is None: p.kill()
    stop(server)
    assert all(p.returncode == 0 for p in runs), [e[-1500:] for _, e in outs]
    assert not writers.errors, writers.errors[:3]

    recs = [run_record(settings, first)] + [json.loads((tmp_path / "runs" / o.split()[0] / "run.json").read_text()) for o, _ in outs]
    assert len({r["run_id"] for r in recs}) == 9 and all(r["status"] == "succeeded" for r in recs)      # no lost run
    lin = sqlite3.connect(tmp_path / "lineage.db")
    assert lin.execute("SELECT COUNT(*) FROM runs WHERE status='succeeded'").fetchone()[0] == 9
    reg = sqlite3.connect(tmp_path / "registry.db")
    versions = reg.execute("SELECT version, run_id FROM versions ORDER BY version").fetchall()
    assert [v for v, _ in versions] == list(range(1, 10))                        # nine seeds, nine bundles, no gap
    assert {r for _, r in versions} == {r["run_id"] for r in recs}              # each run's version, none lost
    hist = reg.execute("SELECT to_version FROM alias_history WHERE alias='canary' ORDER BY id").fetchall()
    assert [v for (v,) in hist] == moved and len(moved) > 5                     # every move, in order, no other
    staging = reg.execute("SELECT COUNT(*) FROM alias_history WHERE alias='staging'").fetchone()[0]
    assert staging == 9                                                         # each registration moved staging once
    for name in ("lineage.db", "registry.db", "predictions.db"):
        assert sqlite3.connect(tmp_path / name).execute("PRAGMA integrity_check").fetchone()[0] == "ok", name
    log = sqlite3.connect(tmp_path / "predictions.db")
    logged = {r for (r,) in log.execute("SELECT request_id FROM predictions WHERE role IN ('primary', 'canary')")}
    labelled = {r for (r,) in log.execute("SELECT request_id FROM feedback")}
    assert set(writers.acked) <= logged and set(writers.labels) <= labelled and len(writers.labels) > 100   # nothing lost
    print(f"8 runs at once: {len(moved)} canary moves, {len(writers.acked)} predictions and {len(writers.labels)} labels, none lost")
