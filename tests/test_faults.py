"""The prediction service under faults: `kill -9` under load (what an acknowledged prediction can lose), and a prediction
log that cannot be written (a full disk, a lock held by another process, a corrupt or replaced file), with
`[serve] log_failure` = keep (the default: answer, count, hold a bounded backlog) and = refuse (503 naming the problem)."""
import errno, json, os, random, signal, sqlite3, subprocess, threading, time, urllib.request
import http.client as hc
from pathlib import Path
import numpy as np
import pytest
from test_serve import start, stop, http, own_log

ROW = json.dumps({"inputs": [np.zeros((1, 8, 8), np.uint8).tolist()]})
MARGIN_S = 0.25      # on top of one flush interval: one commit's time and the scheduling of 2 busy cores
FULL, LOCKED, CORRUPT = (f'mlops_nb_log_write_failures_total{{reason="{r}"}}' for r in ("full", "locked", "corrupt"))
DROPPED = 'mlops_nb_log_dropped_rows_total{table="predictions"}'


def metrics(url) -> dict:
    "The service's /metrics as {series: value}."
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r: text = r.read().decode()
    return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l and not l.startswith("#")}


def ids(path, table="predictions", where="") -> list:
    "Request ids in the log at `path`: a read-only connection (it never creates the file nor takes the write lock); "
    "[] while there is no readable log there (the writer is moving a corrupt one aside)."
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try: return [r[0] for r in db.execute(f"SELECT request_id FROM {table} {where}")]
        finally: db.close()
    except sqlite3.Error: return []


def integrity(path) -> str:
    db = sqlite3.connect(path)
    try: return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally: db.close()


def until(cond, timeout=15.0, every=0.05, what="condition"):
    "Poll `cond` until it is true (returned), or fail after `timeout` seconds."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if v := cond(): return v
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def aside(d: Path) -> list:
    "The corrupt logs moved aside in `d`."
    return [f for f in d.glob("predictions.db.corrupt-*") if not f.name.endswith(("-wal", "-shm"))]


class Client:
    "One keep-alive connection sending single-row predictions; `acks`: (request id, time the answer was read, status)."
    def __init__(self, url, prefix):
        self.conn, self.prefix, self.i, self.acks = hc.HTTPConnection(url.removeprefix("http://"), timeout=30), prefix, 0, []

    def send(self, n=1, pause=0.0) -> list:
        "Send `n` predictions; their statuses."
        out = []
        for _ in range(n):
            rid = f"{self.prefix}{self.i}"; self.i += 1
            self.conn.request("POST", "/v1/predict", ROW, {"content-type": "application/json", "x-request-id": rid})
            r = self.conn.getresponse(); body = r.read()
            self.acks.append((rid, time.time(), r.status, body))
            out.append(r.status)
            if pause: time.sleep(pause)
        return out

    def ok(self) -> list: return [rid for rid, _, st, _ in self.acks if st == 200]


def loop(c: Client, stop_ev: threading.Event):
    "A client thread: send until `stop_ev`, or until the service is gone."
    try:
        while not stop_ev.is_set(): c.send()
    except (OSError, hc.HTTPException): pass


# ---------------------------------------------------------------- kill -9 under load

def test_kill_9_under_load_loses_at_most_one_flush_interval(tmp_path, smoke):
    "Three clients for 3 s, then SIGKILL: every prediction acknowledged longer than one flush interval (plus a margin) "
    "before the kill is in the log, the file passes integrity_check, and the service starts again on it."
    from mlops_nb.core.config import load_settings
    settings, _, _ = smoke
    s2 = own_log(tmp_path, settings)
    flush_s = load_settings(s2).serve["flush_ms"] / 1000
    url, p = start(s2)
    clients, threads, stop_ev = [], [], threading.Event()
    try:
        clients = [Client(url, f"k{i}-") for i in range(3)]
        threads = [threading.Thread(target=loop, args=(c, stop_ev)) for c in clients]
        for t in threads: t.start()
        time.sleep(3 + random.uniform(0, flush_s))                    # at a random moment of the writer's flush cycle
        t_kill = time.time()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None: p.kill()
        stop_ev.set()
        for t in threads: t.join(30)
    acks = [(rid, t) for c in clients for rid, t, st, _ in c.acks if st == 200]
    assert len(acks) > 300, len(acks)
    db = tmp_path / "predictions.db"
    assert integrity(db) == "ok"
    logged = set(ids(db))
    lost = sorted(t_kill - t for rid, t in acks if rid not in logged)
    print(f"\nkill -9 after {len(acks)} acknowledged predictions (3 clients, 3 s, flush_ms {flush_s * 1000:g}): "
          f"{len(lost)} acknowledged but not logged ({len(lost) / len(acks):.3%}), the oldest acknowledged "
          f"{(lost[-1] * 1000 if lost else 0):.1f} ms before the kill; bound: flush interval {flush_s * 1000:g} ms + margin {MARGIN_S * 1000:g} ms")
    late = [a for a in lost if a > flush_s + MARGIN_S]
    assert not late, f"{len(late)} predictions acknowledged over {flush_s + MARGIN_S:.3f} s before the kill were lost: {late[:5]}"
    assert logged <= {rid for rid, _ in acks} | {rid for c in clients for rid, *_ in c.acks}   # nothing logged that was never sent
    url, p = start(s2)                                   # and the service starts again on the log the kill left
    try: assert http("POST", url + "/v1/predict", {"inputs": [[0] * 64]}, {"x-request-id": "after-kill"})[0] == 200
    finally: stop(p)
    assert "after-kill" in ids(db) and integrity(db) == "ok"


# ---------------------------------------------------------------- a full disk (a small tmpfs)

@pytest.fixture
def tiny_disk(tmp_path):
    "A 4 MB tmpfs mounted at tmp_path/disk (root only; skipped elsewhere), unmounted afterwards."
    d = tmp_path / "disk"; d.mkdir()
    if os.geteuid() != 0: pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try: yield d
    finally: subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(d: Path) -> Path:
    "Fill the filesystem at `d` to the last byte with a file; returns it."
    f = d / "filler"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while True: os.write(fd, b"\0" * size)
            except OSError as e: assert e.errno == errno.ENOSPC, e
    finally: os.close(fd)
    return f


def log_settings(tmp_path, settings, db: Path, **serve) -> Path:
    "Settings like `settings` with the prediction log at `db`."
    s2 = own_log(tmp_path, settings, **serve)
    s2.write_text(s2.read_text().replace(str(tmp_path / "predictions.db"), str(db)))
    return s2


def test_full_disk_keeps_answering_bounds_the_backlog_and_recovers(tmp_path, smoke, tiny_disk):
    "log_failure = keep: with the log's disk full every prediction is answered; the writer fails (reason full), holds "
    "at most log_backlog_rows rows, drops the newest beyond (counted); /readyz names the problem; once space returns "
    "it writes what it held, and the counters stop rising. Logged + dropped = answered, exactly."
    settings, _, _ = smoke
    db = tiny_disk / "predictions.db"
    url, p = start(log_settings(tmp_path, settings, db, log_backlog_rows=200))
    err = ""
    try:
        c = Client(url, "d")
        assert c.send(20) == [200] * 20
        until(lambda: len(ids(db)) == 20, what="the first rows logged")
        filler = fill(tiny_disk)
        assert c.send(400) == [200] * 400                               # the service keeps answering
        until(lambda: metrics(url)[FULL] >= 1, what="a failed write counted")
        m = metrics(url)
        assert m["mlops_nb_log_degraded"] == 1 and 0 < m["mlops_nb_log_queue_depth"] <= 200, m
        assert m[DROPPED] > 0, m                                       # past the backlog of 200 rows
        st, _, ready = http("GET", url + "/readyz")
        assert st == 200 and "full" in ready["log"]["problem"] and str(db) in ready["log"]["problem"], ready
        filler.unlink()                                                 # space returns
        until(lambda: (m := metrics(url))["mlops_nb_log_queue_depth"] == 0 and m["mlops_nb_log_degraded"] == 0, what="the backlog written")
        m = metrics(url)
        dropped = m[DROPPED]
        assert len(ids(db)) + dropped == 420, (len(ids(db)), dropped)  # every answered prediction logged or counted as dropped
        assert http("GET", url + "/readyz")[2].get("log") is None
        assert c.send(20) == [200] * 20                                 # written again; the counters stop rising
        until(lambda: len(ids(db)) + dropped == 440, what="new rows logged")
        m2 = metrics(url)
        for k in (FULL, DROPPED): assert m2[k] == m[k], k
        print(f"\nfull disk, keep: 420 answered, {dropped:.0f} dropped past a backlog of 200, {m[FULL]:.0f} failed writes")
    finally: err = stop(p)
    assert "database or disk is full" in err and "writing again" in err, err
    assert integrity(db) == "ok"


def test_full_disk_refuses_with_503_when_configured(tmp_path, smoke, tiny_disk):
    "log_failure = refuse: once a write fails, predictions get 503 naming the log's problem (and /readyz 503); every "
    "prediction answered 200 is in the log, the refusals too; when space returns it answers again."
    settings, _, _ = smoke
    db = tiny_disk / "predictions.db"
    url, p = start(log_settings(tmp_path, settings, db, log_failure="refuse"))
    err = ""
    try:
        c = Client(url, "r")
        assert c.send(10) == [200] * 10
        filler = fill(tiny_disk)
        until(lambda: c.send(1, pause=0.005) == [503], timeout=20, every=0, what="a 503")
        st, _, e = http("POST", url + "/v1/predict", {"inputs": [[0] * 64]})
        assert st == 503 and "prediction log" in e["error"] and "full" in e["error"] and str(db) in e["error"], e
        st, _, ready = http("GET", url + "/readyz")
        assert st == 503 and "full" in ready["log"]["problem"], ready
        assert c.send(5) == [503] * 5
        filler.unlink()
        until(lambda: c.send(1, pause=0.05) == [200], timeout=15, every=0, what="answering again")
        assert http("GET", url + "/readyz")[0] == 200
        refused = sum(st == 503 for *_, st, _ in c.acks) + 1
        until(lambda: set(c.ok()) <= set(ids(db)), what="every answered prediction logged")
        until(lambda: len(ids(db, "rejected", "WHERE status = 503")) == refused, what="the refusals logged")
        m = metrics(url)
        assert m['mlops_nb_rejected_total{reason="log_unavailable",route="/v1/predict"}'] == refused, m
        assert m[DROPPED] == 0
        print(f"\nfull disk, refuse: {len(c.ok())} answered (all logged), {refused} refused with 503")
    finally: err = stop(p)
    assert "database or disk is full" in err, err


# ---------------------------------------------------------------- a lock held by another process

@pytest.mark.parametrize("mode", ["keep", "refuse"])
def test_a_lock_held_elsewhere(tmp_path, smoke, mode):
    "Another connection holds the log's write lock for 3 s: keep answers everything and writes it all once the lock "
    "is released; refuse answers 503 once a write has failed; failures counted with reason locked; nothing answered is lost."
    settings, _, _ = smoke
    s2 = own_log(tmp_path, settings, log_failure=mode)
    db = tmp_path / "predictions.db"
    url, p = start(s2)
    try:
        c = Client(url, "l")
        assert c.send(10) == [200] * 10
        until(lambda: len(ids(db)) == 10, what="the first rows logged")
        other = sqlite3.connect(db, timeout=30, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")                                # as `sqlite3 predictions.db` with BEGIN EXCLUSIVE would
        t0 = time.time()
        while time.time() - t0 < 3: c.send(1, pause=0.01)
        m = metrics(url)
        assert m[LOCKED] >= 1 and m["mlops_nb_log_degraded"] == 1, m
        statuses = [st for *_, st, _ in c.acks[10:]]
        if mode == "keep": assert set(statuses) == {200}
        else:
            assert 503 in statuses and statuses[0] == 200, statuses    # answered until the first write failed (a second)
            assert any("locked" in json.loads(b)["error"] for *_, st, b in c.acks if st == 503)
        other.execute("COMMIT"); other.close()
        until(lambda: (m := metrics(url))["mlops_nb_log_queue_depth"] == 0 and m["mlops_nb_log_degraded"] == 0, what="written")
        until(lambda: set(c.ok()) <= set(ids(db)), what="every answered prediction logged")
        m = metrics(url)
        assert m[DROPPED] == 0
        assert c.send(5) == [200] * 5
        until(lambda: set(c.ok()) <= set(ids(db)), what="new rows logged")
        assert metrics(url)[LOCKED] == m[LOCKED]                       # the counter stopped rising
        print(f"\nlock held 3 s, {mode}: {len(c.ok())} answered and logged, {statuses.count(503)} refused, {m[LOCKED]:.0f} failed writes")
    finally: err = stop(p)
    assert "database is locked" in err and "writing again" in err, err


# ---------------------------------------------------------------- a corrupt or replaced file

def test_a_corrupt_log_is_moved_aside_and_a_new_one_started(tmp_path, smoke):
    "The log file overwritten with garbage while serving, then replaced by a garbage file: each time the writer moves it "
    "aside (NAME.corrupt-TIME, one line on stderr) and starts a new log at the path; every prediction answered after the "
    "damage is in the new log; the service never stops answering."
    settings, _, _ = smoke
    db = tmp_path / "predictions.db"
    url, p = start(own_log(tmp_path, settings))
    try:
        c = Client(url, "before")
        assert c.send(10) == [200] * 10
        until(lambda: len(ids(db)) == 10, what="the first rows logged")
        with open(db, "r+b") as f: f.write(os.urandom(max(db.stat().st_size, 8192)))   # overwritten in place
        c.prefix = "after"
        assert c.send(10) == [200] * 10
        until(lambda: len(aside(tmp_path)) == 1 and
              sorted(ids(db)) == sorted(f"after{i}" for i in range(10, 20)), what="a new log with the rows since")
        garbage = tmp_path / "garbage"; garbage.write_bytes(os.urandom(16384))
        os.replace(garbage, db)                                                          # replaced by a file that is no database
        c.prefix = "again"
        assert c.send(10) == [200] * 10
        until(lambda: len(aside(tmp_path)) == 2
              and sorted(ids(db)) == sorted(f"again{i}" for i in range(20, 30)), what="another new log")
        assert integrity(db) == "ok"
        m = metrics(url)
        assert m[DROPPED] == 0 and m["mlops_nb_log_queue_depth"] == 0 and m[CORRUPT] == 2, m   # each file moved aside
    finally: err = stop(p)
    said = [l for l in err.splitlines() if "is corrupt" in l and "moved it to predictions.db.corrupt-" in l]
    assert len(said) == 2, err
