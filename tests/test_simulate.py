"""`mlops-nb simulate`: each drift changes what it says it changes; against a real service, traffic spread over days, with
tags and feedback, lands in the prediction log at the times sent when the service allows client times (`[serve]
client_time = true`), at the server's time when it does not, and only with the key when one is set."""
import configparser, json, time
from datetime import datetime
from pathlib import Path
import numpy as np
import pytest
from conftest import cli
from test_serve import http, start, stop
from mlops_nb.core.predlog import predictions
from mlops_nb.monitor.simulate import DRIFTS, apply_drift, blur, brightness, class_shift, invert, noise, rotate, sample, timestamps


@pytest.fixture(scope="module")
def digits():
    from mlops_nb.build.data import read_digits
    x, y, _ = read_digits()
    return x[:500], y[:500]


def test_invert_is_the_negative(digits):
    x, _ = digits
    assert (invert(x, 1.0) == 255 - x).all()
    half = (invert(x, 0.5, seed=1) == 255 - x).all(axis=(1, 2, 3)).mean()
    assert 0.35 < half < 0.65                                                   # severity: the share of images negated


def test_noise_blur_brightness_rotate_change_pixel_statistics(digits):
    x, _ = digits
    f = x.astype(float)
    nz = noise(x, 0.5).astype(float)
    assert np.abs(nz - f).mean() > 20 and (nz == 0).mean() < (x == 0).mean() - 0.2   # every pixel moves; the black background goes
    grad = lambda a: np.abs(np.diff(a.astype(float), axis=-1)).mean()
    assert grad(blur(x, 0.5)) < 0.7 * grad(x)                                  # blur: edges soften
    assert brightness(x, 0.5).mean() > f.mean() + 40
    r = rotate(x[:1], 1.0)[0, 0]                                               # a quarter turn is exact on the pixel grid
    assert (r == np.rot90(x[0, 0], 1)).all() or (r == np.rot90(x[0, 0], -1)).all()
    for fn in (noise, blur, brightness, rotate, invert):
        assert (fn(x, 0.0) == x).all(), fn.__name__                             # severity 0: no drift
        assert (fn(x, 0.7, seed=3) == fn(x, 0.7, seed=3)).all(), fn.__name__    # deterministic given the seed


def test_class_shift_moves_the_class_mix_not_the_images(digits):
    x, y = digits
    cx, cy = class_shift(x, y, 0.8, seed=0)
    first = lambda v: np.isin(v, np.arange(5)).mean()
    assert first(y) < 0.6 and first(cy) > 0.85
    originals = {r.tobytes() for r in x}
    assert all(r.tobytes() in originals for r in cx)                           # every image is one of the originals, as it was
    assert all((cx[i] == x[y == cy[i]]).all(axis=(1, 2, 3)).any() for i in range(0, len(cy), 25))   # still with its own label
    assert np.isin(class_shift(x, y, 1.0)[1], np.arange(5)).all()
    for name in DRIFTS:
        a, b = apply_drift(name, x, y, 0.5, seed=2)
        assert a.shape == x.shape and a.dtype == np.uint8 and len(b) == len(y)


def test_sample_and_timestamps(digits):
    x, y = digits
    assert len({r.tobytes() for r in sample(x, y, 100)[0]}) >= 95               # without replacement while it fits
    assert len(sample(x, y, 2000)[1]) == 2000                                  # with replacement beyond
    t = timestamps(1000, 3, end=1_700_000_000)
    assert (np.diff(t) > 0).all() and 2.99 < (t[-1] - t[0]) / 86400 <= 3 and t[-1] < 1_700_000_000
    per_day = np.histogram(t, bins=3, range=(1_700_000_000 - 3 * 86400, 1_700_000_000))[0]
    assert (abs(per_day - 333) <= 2).all(), per_day                             # even by the day


def own(smoke, tmp: Path, **serve) -> Path:
    "Settings sharing the smoke workbook (its registry and store), with a prediction log of their own and `[serve]` values set."
    settings = Path(smoke[0])
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    for k, v in cp["paths"].items(): cp["paths"][k] = str((settings.parent / v).resolve())
    cp["paths"]["predictions"] = str(tmp / "predictions.db")
    for k, v in serve.items(): cp["serve"][k] = str(v)
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "settings.ini", "w") as f: cp.write(f)
    return tmp / "settings.ini"


def seconds(iso: str) -> float: return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_simulate_three_days_of_tagged_traffic_with_feedback(smoke, tmp_path):
    settings = own(smoke, tmp_path, client_time="true")
    url, p = start(settings, env={"MLOPS_NB_API_KEY": ""})
    try:
        t0 = time.time()
        r = cli("simulate", "--url", url, "--n", "200", "--days", "3", "--feedback-rate", "0.5", "--tag", "camera=north",
                "--json", settings=settings, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["requests"], out["failed"], out["client_time"], out["model"][:11]) == (200, 0, True, "digits-cnn@"), out
        # the model is resolved in the workbook's registry: another registry does not have it
        other = own(smoke, tmp_path / "other")
        cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str; cp.read(other)
        cp["paths"]["registry"] = str(tmp_path / "other" / "registry.db")
        with open(other, "w") as f: cp.write(f)
        bad = cli("simulate", "--url", url, "--n", "5", "-q", settings=other)
        assert bad.returncode == 2 and "not in this workbook's registry" in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr
    finally:
        stop(p)                                                                # the log is committed when the service stops
    rows = predictions(tmp_path / "predictions.db")
    assert len(rows) == 200
    ts = np.array(sorted(seconds(x["time"]) for x in rows))
    assert 2.9 < (ts[-1] - ts[0]) / 86400 <= 3.0 and ts[0] >= t0 - 3 * 86400 - 5 and ts[-1] <= time.time()
    assert len({x["time"][:10] for x in rows}) >= 3                            # the daily view sees three days at least
    labelled = [x for x in rows if x["true_label"] is not None]
    assert len(labelled) == out["feedback"] and 70 <= len(labelled) <= 130
    assert all(x["tags"] == {"camera": "north"} for x in rows)
    assert all(x["request_id"].startswith("sim-") for x in rows)
    acc = np.mean([x["label"] == x["true_label"] for x in labelled])
    assert abs(acc - out["accuracy"]) < 0.15                                   # the log's labels are the simulator's truth


def test_client_time_off_logs_the_server_clock(smoke, tmp_path):
    settings = own(smoke, tmp_path)                                           # client_time: false, the default
    url, p = start(settings, env={"MLOPS_NB_API_KEY": ""})
    try:
        t0 = time.time()
        st, h, _ = http("POST", url + "/v1/predict", {"inputs": [[0] * 64]},
                        {"x-request-id": "old-1", "x-request-time": "2020-01-01T00:00:00Z"})
        assert st == 200 and "x-request-time" not in {k.lower() for k in h}
        r = cli("simulate", "--url", url, "--n", "10", "--days", "2", "-q", settings=settings, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "client_time = true" in r.stderr and "NOT logged" in r.stdout
    finally:
        stop(p)
    rows = predictions(tmp_path / "predictions.db")
    assert len(rows) == 11 and all(seconds(x["time"]) >= t0 - 1 for x in rows)


def test_client_time_needs_the_key_when_one_is_set(smoke, tmp_path):
    settings = own(smoke, tmp_path, client_time="true")
    url, p = start(settings, env={"MLOPS_NB_API_KEY": "k3y"})
    try:
        row = {"inputs": [[0] * 64]}
        assert http("POST", url + "/v1/predict", row, {"x-request-time": "1700000000"})[0] == 401
        st, h, _ = http("POST", url + "/v1/predict", row, {"x-request-time": "1700000000", "x-api-key": "k3y", "x-request-id": "k-1"})
        assert st == 200 and {k.lower(): v for k, v in h.items()}.get("x-request-time") == "2023-11-14T22:13:20.000Z"
        assert http("POST", url + "/v1/predict", row)[0] == 200                 # without the header the key is not needed
        r = cli("simulate", "--url", url, "--n", "30", "--days", "1", "-q", settings=settings, env={"MLOPS_NB_API_KEY": ""})
        assert r.returncode == 1 and "stopped: the first 8 requests all failed" in r.stderr and "--api-key" in r.stderr, r.stderr
        r = cli("simulate", "--url", url, "--n", "30", "--days", "1", "--api-key", "k3y", "-q", "--json", settings=settings)
        assert r.returncode == 0 and json.loads(r.stdout)["client_time"] is True, r.stderr
    finally:
        stop(p)
    rows = {x["request_id"]: x for x in predictions(tmp_path / "predictions.db")}
    assert rows["k-1"]["time"] == "2023-11-14T22:13:20.000Z"
