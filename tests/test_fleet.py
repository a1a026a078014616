"""A fleet as an operator meets it: two `mlops-nb serve` replicas on two ports archive their prediction logs to one
bucket of a real S3 API on loopback (moto's server mode, reached by s3fs as any S3: no mock of the client calls); labels
sent to one replica for requests the other answered join when monitoring reads; `mlops-nb monitor` reports over both;
an upload that fails while the server is down is retried and nothing is lost; a tampered segment is refused."""
import configparser, os, time
from pathlib import Path
import numpy as np
import pytest
from conftest import cli
from test_serve import start, stop, http
from test_faults import until


def replica_settings(d: Path, settings, archive: str, **serve) -> Path:
    "Settings like `settings` with their own prediction log in `d`, archiving to `archive` every second."
    d.mkdir(parents=True, exist_ok=True)
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    cp["paths"]["predictions"] = str(d / "predictions.db")
    cp["paths"]["predictions_archive"] = archive
    cp["paths"]["archive_cache"] = str(d / "segments")
    for k, v in {"archive_every_s": 1, **serve}.items(): cp["serve"][k] = str(v)
    with open(d / "settings.ini", "w") as f: cp.write(f)
    return d / "settings.ini"


def predict(url, n, prefix, x) -> list:
    "Send `n` one-row predictions; their request ids."
    ids = []
    for i in range(n):
        st, _, body = http("POST", url + "/v1/predict", {"inputs": [x[i % len(x)].ravel().tolist()]}, {"x-request-id": f"{prefix}{i}"})
        assert st == 200, body
        ids.append(f"{prefix}{i}")
    return ids


def segments(table="predictions") -> list:
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return sorted(p for p in fs.find(f"fleet/logs/{table}") if p.endswith(".parquet"))


def metric(url, name) -> float:
    "One sample of the service's /metrics (`name` with its labels as exposed)."
    import urllib.request
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return float(next(l.rsplit(" ", 1)[1] for l in text.splitlines() if l.startswith(name + " ")))


def test_two_replicas_archive_to_one_bucket_and_one_monitor_report_covers_both(tmp_path, smoke, s3):
    settings, _, _ = smoke
    x = np.random.default_rng(0).integers(0, 17, (50, 64))
    a_set = replica_settings(tmp_path / "a", settings, "s3://fleet/logs", replica="cam-a")
    b_set = replica_settings(tmp_path / "b", settings, "s3://fleet/logs", replica="cam-b")
    (a, pa), (b, pb) = start(a_set), start(b_set)
    try:
        ida, idb = predict(a, 40, "a-", x), predict(b, 30, "b-", x)
        # labels cross replicas: A's requests labelled at B, B's at A; each accepts them as answered elsewhere
        st, _, body = http("POST", b + "/v1/feedback", [{"request_id": r, "label": "3"} for r in ida[:20]])
        assert st == 200 and body == {"accepted": 20, "elsewhere": 20}, body
        st, _, body = http("POST", a + "/v1/feedback", [{"request_id": r, "label": "4"} for r in idb[:10]])
        assert st == 200 and body["elsewhere"] == 10, body
        until(lambda: len({Path(p).name.split("-0")[0] for p in segments("feedback")}) == 2, what="both replicas' feedback segments")
    finally: ea, eb = stop(pa), stop(pb)
    assert "archiving the log to s3://fleet/logs every 1 s as replica cam-a" in ea and "cam-b" in eb
    assert "fleet-test-secret" not in ea + eb
    names = [Path(p).name for p in segments()]
    assert {n.split("-0")[0] for n in names} == {"cam-a", "cam-b"}, names
    # a third settings file: a monitoring host with no live log of its own, only the bucket
    m_set = replica_settings(tmp_path / "monitor", settings, "s3://fleet/logs")
    r = cli("monitor", "--since", "1h", settings=m_set, env={k: os.environ[k] for k in s3[1]})
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stderr.splitlines() if " predictions, " in l)
    assert "70 predictions, 30 labelled" in line, r.stderr
    report = Path(r.stdout.split()[-1]).read_text()
    assert "cam-a" in report and "cam-b" in report and "duckdb" in report


def test_an_upload_that_fails_is_retried_and_nothing_is_lost(tmp_path, smoke, s3):
    srv, env = s3
    settings, _, _ = smoke
    x = np.random.default_rng(1).integers(0, 17, (20, 64))
    url, p = start(replica_settings(tmp_path / "a", settings, "s3://fleet/logs", replica="cam-a"))
    try:
        predict(url, 10, "before-", x)
        until(lambda: segments(), what="the first segment")
        srv.stop()                                            # the object store goes away
        predict(url, 15, "during-", x)
        until(lambda: metric(url, "mlops_nb_archive_degraded") == 1, timeout=60, what="a roll failing")
        assert metric(url, "mlops_nb_archive_failures_total") >= 1
        srv.start()                                           # and comes back (moto keeps its buckets in this process)
        predict(url, 5, "after-", x)
        import pyarrow.parquet as pq, s3fs
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        def archived():
            fs.invalidate_cache()
            return {r for f in segments() for r in pq.read_table(fs.open(f, "rb")).column("request_id").to_pylist()}
        got = until(lambda: a if len(a := archived()) == 30 else None, timeout=60, what="all 30 predictions archived")
        assert metric(url, "mlops_nb_archive_degraded") == 0 and metric(url, 'mlops_nb_archive_rows_total{table="predictions"}') == 30
    finally: err = stop(p)
    assert "cannot archive the log to s3://fleet/logs" in err and "archiving to s3://fleet/logs again" in err, err
    assert got == {f"{k}-{i}" for k, n in (("before", 10), ("during", 15), ("after", 5)) for i in range(n)}
    assert "fleet-test-secret" not in err


def test_a_tampered_segment_is_refused_by_its_digest(tmp_path, s3):
    from mlops_nb.core.archive import Fleet, SegmentError, roll
    from mlops_nb.core.predlog import PredictionLog
    log = PredictionLog(tmp_path / "p.db")
    for i in range(5): log.add(f"r{i}", ("m", 1, "sha256:0"), np.zeros((1, 1, 8, 8), np.uint8), np.full((1, 3), 1 / 3, np.float32), ["a"], 1.0, "/v1/predict")
    log.close()
    assert roll(tmp_path / "p.db", "s3://fleet/logs", "cam-a")["predictions"] == 5
    with Fleet("s3://fleet/logs", cache=tmp_path / "cache") as f: assert f.counts()["predictions"] == 5
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    seg = segments()[0]
    fs.pipe_file(seg, fs.cat_file(seg).replace(b"r3", b"r9"))   # same size, one request id changed
    with pytest.raises(SegmentError, match=r"segment s3://fleet/logs/predictions/.*is refused: its bytes hash to"):
        Fleet("s3://fleet/logs", cache=tmp_path / "cache2")


@pytest.mark.slow
def test_spark_gives_the_report_duckdb_gives_on_the_same_segments(tmp_path, smoke):
    "`engine = spark` (pyspark in local mode: the per-segment step as a Spark job, the parts' summaries merged) and "
    "`engine = duckdb` monitor the same archive: the same rows, labels, figures and checks."
    from mlops_nb.core.archive import roll
    from mlops_nb.core.config import load_settings
    from mlops_nb.monitor.windows import monitor
    from mlops_nb.monitor.report import evaluate
    from mlops_nb.core.predlog import PredictionLog
    settings, _, _ = smoke
    s = load_settings(replica_settings(tmp_path / "m", settings, str(tmp_path / "archive")))
    rng, t0 = np.random.default_rng(5), time.time() - 3 * 86400
    for k, cam in enumerate(("cam-a", "cam-b")):                          # two replicas' logs over three days
        log = PredictionLog(tmp_path / f"{cam}.db")
        x = rng.integers(0, 17, (600, 1, 8, 8), dtype=np.uint8); x[300:] = np.minimum(x[300:] + 4, 16)   # drifted later
        p = rng.dirichlet(np.ones(10), 600).astype(np.float32)
        for i in range(600):
            log.add(f"{cam}-{i}", ("digits-cnn", 1, "sha256:0"), x[i:i + 1], p[i:i + 1], [str(p[i].argmax())], 3.0,
                    "/v1/predict", {"camera": cam}, ts=t0 + i * 400)
        for i in range(0, 600, 4): log.feedback(f"{'cam-b' if k == 0 else 'cam-a'}-{i}", 0, str(i % 10), ts=t0 + i * 400 + 60)
        log.close()
        roll(tmp_path / f"{cam}.db", tmp_path / "archive", cam)
    until = time.time()
    figs = {e: flat(evaluate(monitor(s, "digits-cnn@1", t0 - 1, until, "1d", engine=e), s.monitor)) for e in ("duckdb", "spark")}
    d, sp = figs["duckdb"], figs["spark"]
    assert d[".total.rows"] == 1200 and d[".total.labels.labelled"] == 300 and d.keys() == sp.keys()
    differ = [k for k in d if d[k] != sp[k] and not (isinstance(d[k], float) and abs(d[k] - sp[k]) <= 1e-12 * max(1.0, abs(d[k])))]
    assert not differ, [(k, d[k], sp[k]) for k in differ[:10]]           # sums added in another order: last digits only


def flat(x, at: str = "") -> dict:
    "A nested figure dict as {path: value}."
    if isinstance(x, dict): return {k2: v2 for k, v in x.items() for k2, v2 in flat(v, f"{at}.{k}").items()}
    if isinstance(x, (list, tuple)): return {k2: v2 for i, v in enumerate(x) for k2, v2 in flat(v, f"{at}[{i}]").items()}
    return {at: x}


def test_monitoring_in_two_processes_gives_what_one_gives(tmp_path):
    "`Fleet.map_chunks` with two worker processes (each its share of the segments, labels joined over all of them) "
    "gives the windows one process gives."
    from mlops_nb.core.archive import Fleet, roll
    from mlops_nb.monitor.windows import FIELDS, Window, _Step, figures
    from mlops_nb.core.predlog import PredictionLog
    from mlops_nb.core.reference import build
    rng = np.random.default_rng(3)
    x = rng.integers(0, 17, (400, 1, 8, 8), dtype=np.uint8)
    ref = build(x[:200], np.arange(200) % 3, rng.normal(0, 1, (200, 3)), ["a", "b", "c"])
    for cam in ("a", "b"):
        log = PredictionLog(tmp_path / f"{cam}.db")
        for i in range(400):
            log.add(f"{cam}{i}", ("m", 1, "sha256:0"), x[i:i + 1], rng.dirichlet(np.ones(3), 1).astype(np.float32), ["a"], 1.0,
                    "/v1/predict", {"camera": cam}, ts=1e9 + i * 600)
        for i in range(0, 400, 3): log.feedback(f"{'b' if cam == 'a' else 'a'}{i}", 0, "abc"[i % 3], ts=1e9 + i * 600 + 1)
        log.close(); roll(tmp_path / f"{cam}.db", tmp_path / "archive", cam)
    got = {}
    with Fleet(tmp_path / "archive", cache=tmp_path / "cache") as fl:
        assert len(fl.files["predictions"]) > 4
        for k in (1, 2):
            step, w = _Step([Window(ref, 0, 2e9)], [0, 2e9], 1), Window(ref, 0, 2e9)
            parts = fl.map_chunks("m", 0, 2e9, step, fields=FIELDS, workers=k)
            assert len(parts) == k
            for b in parts: w = w.merge(step.load(b)[0][0])
            got[k] = figures(w)
    one, two = flat(got[1]), flat(got[2])
    assert one[".rows"] == two[".rows"] == 800 and one[".labels.labelled"] == two[".labels.labelled"] == 268 and one.keys() == two.keys()
    differ = [k for k in one if one[k] != two[k] and not (isinstance(one[k], float) and abs(one[k] - two[k]) <= 1e-12 * max(1.0, abs(one[k])))]
    assert not differ, [(k, one[k], two[k]) for k in differ[:10]]     # sums added in another order: last digits only


def test_retraining_takes_every_replicas_labelled_rows_from_the_archive(tmp_path):
    "`digits+predictions:NAME` with an archive: the labelled rows of both replicas (labels sent to either), their inputs "
    "from the segments; the live log's rows not archived yet too; the fingerprint moves when a replica archives more."
    from mlops_nb.core.archive import roll
    from mlops_nb.build.data import ingest, source_fingerprint
    from mlops_nb.core.predlog import PredictionLog
    rng = np.random.default_rng(4)
    for cam in ("a", "b"):
        log = PredictionLog(tmp_path / f"{cam}.db", log_inputs="all")
        x = rng.integers(0, 17, (30, 1, 8, 8), dtype=np.uint8)
        for i in range(30):
            log.add(f"{cam}{i}", ("digits-cnn", 1, "sha256:0"), x[i:i + 1], np.full((1, 10), 0.1, np.float32), ["0"], 1.0, "/v1/predict", ts=1e9 + i)
        for i in range(0, 30, 2): log.feedback(f"{'b' if cam == 'a' else 'a'}{i}", 0, str(i % 10), ts=1e9 + 100 + i)
        log.close()
    roll(tmp_path / "a.db", tmp_path / "archive", "a")
    before = source_fingerprint("digits+predictions:digits-cnn", tmp_path / "b.db", str(tmp_path / "archive"))
    roll(tmp_path / "b.db", tmp_path / "archive", "b")
    assert source_fingerprint("digits+predictions:digits-cnn", tmp_path / "b.db", str(tmp_path / "archive")) != before
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / ("0" * 64 + ".parquet")                  # a segment downloaded long ago, 2 MiB
    stale.write_bytes(b"\0" * (2 << 20)); os.utime(stale, (1e9, 1e9))
    r = ingest("digits+predictions:digits-cnn", tmp_path / "ds", log=None, archive=str(tmp_path / "archive"), archive_cache=tmp_path / "cache",
               archive_cache_mb=1)
    assert not stale.exists()                                             # retraining cuts the cache back as monitoring does
    assert r.manifest["production"]["rows"] == 30 and r.manifest["n"] == 1797 + 30
    assert sorted(i.split("/")[0] for i in r.manifest["production"]["ids"]) == sorted(f"{c}{i}" for c in "ab" for i in range(0, 30, 2))
