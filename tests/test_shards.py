"""Datasets larger than memory: the lazy shard array, streaming and cached ingest, bounded memory, the legacy format."""
import json, os, pickle, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from mlops_nb.core import images
from mlops_nb.build.data import Dataset, ingest, load_dataset, read_imagefolder, save_dataset, stratified_split
from mlops_nb.core.images import DataValidationError
from mlops_nb.core.shards import read_header, ShardArray, ShardWriter, put_shard
from mlops_nb.core.store import IntegrityError, Store


@pytest.fixture(autouse=True)
def own_cores(tmp_path, monkeypatch):
    "Decoding workers take a core lease; here from a pool of their own, not waiting on other runs of this machine."
    monkeypatch.setenv("MLOPS_NB_LOCK_DIR", str(tmp_path / "locks"))


def test_shard_array_indexes_like_numpy(tmp_path):
    st = Store(tmp_path / "store")
    xs = np.random.default_rng(1).integers(0, 256, (50, 3, 5, 4), dtype=np.uint8)
    cuts = [0, 7, 8, 30, 50]                                               # a one-row shard among them
    a = ShardArray([st.path(put_shard(st, xs[i:j])) for i, j in zip(cuts, cuts[1:])])
    assert a.shape == xs.shape and a.dtype == np.uint8 and a.ndim == 4 and len(a) == 50
    for i in (0, 7, 8, 29, 49, -1, -50):
        assert (a[i] == xs[i]).all()
    for s in (slice(None), slice(5, 35), slice(6, 9), slice(None, None, 3), slice(40, 10, -7), slice(60, 70)):
        assert (a[s] == xs[s]).all() and a[s].shape == xs[s].shape
    rng = np.random.default_rng(2)
    idx = rng.integers(-50, 50, 40)                                       # repeats, negatives, every shard
    assert (a[idx] == xs[idx]).all() and (a[list(idx)] == xs[idx]).all()
    mask = rng.random(50) < 0.4
    assert (a[mask] == xs[mask]).all() and a[np.zeros(50, bool)].shape == (0, 3, 5, 4)
    v = a.take(idx)                                                       # a view of a view: still lazy, still right
    w = v.take(np.arange(len(v))[::-2])
    assert (w[:] == xs[idx][::-2]).all() and (np.asarray(v) == xs[idx]).all()
    assert (a.take(mask)[2:5] == xs[mask][2:5]).all()
    assert (np.concatenate(list(v.batches(9))) == xs[idx]).all() and [len(b) for b in a.batches(20)] == [20, 20, 10]
    assert (a[3, 1] == xs[3, 1]).all() and (a[2:4, 0] == xs[2:4, 0]).all()
    b = pickle.loads(pickle.dumps(v))                                     # what a DataLoader worker receives
    assert (b[:] == xs[idx]).all() and len(pickle.dumps(v)) < 2000
    for bad in (50, -51, np.array([0, 50])):
        with pytest.raises(IndexError, match="out of bounds"): a[bad]
    with pytest.raises(IndexError, match="boolean mask"): a[np.ones(49, bool)]
    with pytest.raises(IndexError): a[np.array([0.5])]


def test_shard_array_reads_runs_with_one_pread_each(tmp_path, monkeypatch):
    "Consecutive rows of a shard are one read; np.memmap is not used (mapped pages would count in the RSS)."
    st = Store(tmp_path / "store")
    xs = np.arange(40 * 12, dtype=np.uint8).reshape(40, 3, 2, 2)
    a = ShardArray([st.path(put_shard(st, xs[:20])), st.path(put_shard(st, xs[20:]))])
    calls = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: calls.append(off) or real(fd, bufs, off))
    monkeypatch.setattr(np, "memmap", None)
    assert (a[3:18] == xs[3:18]).all() and len(calls) == 1
    calls.clear()
    assert (a[15:25] == xs[15:25]).all() and len(calls) == 2                   # one run in each shard
    calls.clear()
    assert (a[[5, 6, 7, 30, 31, 2]] == xs[[5, 6, 7, 30, 31, 2]]).all() and len(calls) == 3


def test_shard_writer_cuts_at_the_byte_budget(tmp_path):
    st = Store(tmp_path / "store")
    w = ShardWriter(st, (1, 32, 32), shard_mb=10 * 1024 / 2**20)           # 10 images of 1 KiB a shard
    xs = np.random.default_rng(0).integers(0, 256, (25, 1, 32, 32), dtype=np.uint8)
    at = [w.add(im) for im in xs]
    w.close()
    assert [s["rows"] for s in w.shards] == [10, 10, 5] and at[10] == (1, 0) and at[24] == (2, 4)
    assert all(Path(st.path(s["digest"])).stat().st_size < 10 * 1024 + 200 for s in w.shards)
    with pytest.raises(ValueError, match="shape"): w.add(np.zeros((3, 32, 32), np.uint8))


def folder(root: Path, classes=("ant", "bee", "cow"), n=100, seed=0) -> Path:
    "Small RGB PNG and JPEG files of several sizes: n per class."
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            im = Image.fromarray(rng.integers(0, 256, (10 + i % 7, 12 + k, 3), dtype=np.uint8))
            im.save(root / c / f"{i:03d}.{'jpg' if i % 4 == 0 else 'png'}", quality=90)
    return root


def digests(index_path) -> list:
    return [s["digest"] for s in json.loads(Path(index_path).read_text())["shards"]]


def test_streamed_ingest_equals_the_in_memory_read(tmp_path):
    root = folder(tmp_path / "pics")
    x, y, classes, skipped = read_imagefolder(root, image_size=16, mode="RGB")
    r = ingest(f"imagefolder:{root}", tmp_path / "out", image_size=16, mode="RGB", workers=2, shard_mb=0.05)   # 68 rows a shard
    ds = r.dataset
    assert isinstance(ds.x, ShardArray) and len(digests(r.path)) > 4
    assert ds.classes == classes and (ds.y == y).all() and (ds.x[:] == x).all()
    assert (ds.split == stratified_split(y, 0.1, 0.1, 0)).all() and r.skipped == skipped == []
    assert r.stats["decoded"] == 300 and r.stats["files"] == 300
    back = load_dataset(r.path)                                           # the store in out_dir, found from the path
    assert (back.x[:] == x).all() and (back.split == ds.split).all() and back.files["path"][0] == "ant/000.jpg"
    xv, yv = back.part("val")
    assert isinstance(xv, ShardArray) and (xv[:] == x[back.split == 1]).all() and (yv == y[back.split == 1]).all()
    index = json.loads(r.path.read_text())
    assert index["format"] == "mlops-nb-dataset/2" and str(tmp_path) not in r.path.read_text()   # no absolute path
    assert index["rows"]["sha256"][0] == __import__("hashlib").sha256((root / "ant" / "000.jpg").read_bytes()).hexdigest()


def test_streamed_ingest_lists_the_same_problems(tmp_path):
    "Every validation of the in-memory read, in the same words and order, with the files decoded by worker processes."
    from test_data import bad_folder
    bad_folder(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / ".hidden.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "pets" / "dog" / "pipe.png")
    with pytest.raises(DataValidationError) as mem:
        read_imagefolder(tmp_path / "pets", image_size=16)
    with pytest.raises(DataValidationError) as streamed:
        ingest(f"imagefolder:{tmp_path / 'pets'}", tmp_path / "out", image_size=16, workers=2)
    assert streamed.value.problems == mem.value.problems and str(streamed.value) == str(mem.value)
    x, y, classes, skipped = read_imagefolder(tmp_path / "pets", image_size=16, skip_bad=True)
    r = ingest(f"imagefolder:{tmp_path / 'pets'}", tmp_path / "out", image_size=16, skip_bad=True, workers=2)
    assert r.skipped == skipped and r.dataset.classes == classes and (r.dataset.x[:] == x).all()
    assert r.manifest["skipped"] == [list(p) for p in skipped]
    again = ingest(f"imagefolder:{tmp_path / 'pets'}", tmp_path / "out", image_size=16, skip_bad=True, workers=1)
    assert again.skipped == skipped and again.stats["decoded"] == 1          # only the FIFO is tried again: its reason is not cached


def test_reingest_reads_only_the_changed_file(tmp_path, monkeypatch):
    root = folder(tmp_path / "pics")
    store = Store(tmp_path / "store")
    kw = dict(image_size=16, mode="RGB", shard_mb=0.05, store=store)
    first = ingest(f"imagefolder:{root}", tmp_path / "a", workers=2, **kw)
    calls = []
    real = images.decode_image                                   # where the readers look it up
    monkeypatch.setattr(images, "decode_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    same = ingest(f"imagefolder:{root}", tmp_path / "b", workers=1, **kw)
    assert calls == [] and same.stats["decoded"] == 0 and same.stats["shards_written"] == 0
    assert same.manifest["version"] == first.manifest["version"]             # nothing read, the same dataset

    changed = root / "bee" / "050.png"
    Image.fromarray(np.full((11, 13, 3), 7, np.uint8)).save(changed)
    r = ingest(f"imagefolder:{root}", tmp_path / "c", workers=1, **kw)
    assert len(calls) == 1 and r.stats["decoded"] == 1 and r.stats["shards_written"] == 1
    old, new = digests(first.path), digests(r.path)
    assert set(old) < set(new) and len(new) == len(old) + 1       # every shard kept; the changed file in a new one
    assert read_header(store.path(*(set(new) - set(old))))[0] == 1  # which holds only the changed image
    assert r.manifest["version"] != first.manifest["version"]
    i = r.dataset.files["path"].index("bee/050.png")
    assert (r.dataset.x[i] == 7).all()                                               # the new pixels
    x, y, _, _ = read_imagefolder(root, image_size=16, mode="RGB")
    assert (r.dataset.x[:] == x).all() and (r.dataset.y == y).all()                  # the old pixels from the old shards

    calls.clear()                                                                     # only the time changes: read, same content
    os.utime(root / "ant" / "010.png", ns=(10**18, 10**18))
    t = ingest(f"imagefolder:{root}", tmp_path / "d", workers=1, **kw)
    assert len(calls) == 1 and t.stats["shards_written"] == 0 and t.manifest["version"] == r.manifest["version"]

    calls.clear()                                                                     # a new file in one class moves no other shard
    Image.fromarray(np.full((11, 13, 3), 99, np.uint8)).save(root / "ant" / "055b.png")
    u = ingest(f"imagefolder:{root}", tmp_path / "e", workers=1, **kw)
    assert len(calls) == 1 and u.stats["shards_written"] == 1 and len(set(digests(u.path)) - set(digests(r.path))) == 1


def test_a_damaged_or_stale_ingest_cache_reads_the_files_again(tmp_path):
    "The cache is a snapshot of the folder's files: damaged, it is read as empty (every file decoded again, the same "
    "dataset); a shard gone from the store sends its files to be read again; the table of an older cache is dropped."
    import sqlite3
    root, store = folder(tmp_path / "pics", n=30), Store(tmp_path / "store")
    (tmp_path / "store").mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(tmp_path / "store" / "ingest-cache.db")            # a cache as an earlier version left it
    old.execute("CREATE TABLE files (path TEXT, params TEXT, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT, "
                "shard TEXT, row INTEGER, reason TEXT, PRIMARY KEY (path, params))"); old.commit(); old.close()
    kw = dict(image_size=16, mode="RGB", shard_mb=0.01, store=store, workers=1)
    first = ingest(f"imagefolder:{root}", tmp_path / "a", **kw)
    tables = {r[0] for r in sqlite3.connect(tmp_path / "store" / "ingest-cache.db").execute("SELECT name FROM sqlite_master")}
    assert "files" not in tables and "shards" in tables
    (snap,) = (tmp_path / "store" / "ingest-cache").glob("*.npz")
    snap.write_bytes(b"not a snapshot")
    again = ingest(f"imagefolder:{root}", tmp_path / "b", **kw)
    assert again.stats["decoded"] == again.stats["files"] == 90 and again.manifest["version"] == first.manifest["version"]
    assert ingest(f"imagefolder:{root}", tmp_path / "c", **kw).stats["decoded"] == 0          # whole again

    gone = digests(first.path)[0]
    store.path(gone, verify=False).unlink()
    rows = sum(1 for s in json.loads(first.path.read_text())["rows"]["shard"] if s == 0)
    r = ingest(f"imagefolder:{root}", tmp_path / "d", **kw)
    assert r.stats["decoded"] == rows and r.manifest["version"] == first.manifest["version"] and store.has(gone)
    x, y, _, _ = read_imagefolder(root, image_size=16, mode="RGB")
    assert (r.dataset.x[:] == x).all() and (r.dataset.y == y).all()


def test_production_rows_stream_into_shards(tmp_path, monkeypatch):
    "`SOURCE+predictions:MODEL` adds the labelled production inputs a chunk at a time, never all at once."
    from mlops_nb.core.predlog import PredictionLog
    base = ingest("digits", tmp_path / "a")
    px, py = base.dataset.x[:40], base.dataset.y[:40]
    log = PredictionLog(tmp_path / "p.db", flush_ms=10)
    for i in range(40):
        log.add(f"q{i}", ("toy", 1, "sha256:aa"), px[i:i + 1], np.full((1, 10), 0.1, np.float32), ["0"], 1.0, "/v1/predict")
        if i % 2: log.feedback(f"q{i}", 0, str(py[i]))
    log.close()
    import mlops_nb.core.predlog as pl
    real, sizes = pl.chunks, []
    monkeypatch.setattr(pl, "chunks", lambda *a, **k: (sizes.append(len(c["x"])) or c for c in real(*a, **{**k, "size": 7})))
    r = ingest("digits+predictions:toy", tmp_path / "b", log=tmp_path / "p.db", shard_mb=0.01)
    n = base.manifest["n"]
    assert r.manifest["n"] == n + 20 and r.manifest["production"]["rows"] == 20 and sizes == [7] * 5 + [5]   # chunk by chunk
    assert r.stats == {"files": 0, "decoded": 0, "shards_written": 0, "shards_reused": 0}
    assert (r.dataset.x[n:] == px[1::2]).all() and (r.dataset.y[n:] == py[1::2]).all()
    assert r.dataset.files["path"][n] == "predictions/q1/0"


def test_ingest_memory_is_bounded_by_the_shard_size(tmp_path):
    "2,000 images of 64 px RGB (24 MiB decoded) with 1 MiB shards: the ingest process grows by a fraction of that."
    root = tmp_path / "big"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(1000):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / c / f"{i}.png", compress_level=0)
    small = tmp_path / "small"
    for c in ("a", "b"):
        (small / c).mkdir(parents=True)
        for i in range(10): Image.fromarray(np.full((64, 64, 3), i + 100 * (c == "b"), np.uint8)).save(small / c / f"{i}.png")
    script = f"""
import json, threading, time, psutil
from mlops_nb.build.data import ingest
ingest("imagefolder:{small}", {str(tmp_path / 'warm')!r}, image_size=64, mode="RGB", workers=1, shard_mb=1)   # imports, first allocations
proc, stop = psutil.Process(), []
base = peak = proc.memory_info().rss
def poll():
    global peak
    while not stop: peak = max(peak, proc.memory_info().rss); time.sleep(0.001)
t = threading.Thread(target=poll); t.start()
r = ingest("imagefolder:{root}", {str(tmp_path / 'out')!r}, image_size=64, mode="RGB", workers=1, shard_mb=1)
stop.append(1); t.join()
print(json.dumps({{"growth": peak - base, "size": r.dataset.x.nbytes, "shards": len(json.load(open(r.path))["shards"])}}))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout.strip().splitlines()[-1])
    assert m["size"] == 2000 * 3 * 64 * 64 and m["shards"] >= 24
    assert m["growth"] < m["size"] / 2, m           # an in-memory read holds all 24 MiB and more; here ~5 MiB (shards, per-file names)


def test_legacy_npz_and_a_corrupt_shard(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (12, 1, 4, 4), dtype=np.uint8)
    ds = Dataset(x=x, y=np.arange(12) % 2, split=stratified_split(np.arange(12) % 2), classes=["a", "b"])
    old = load_dataset(save_dataset(ds, tmp_path / "dataset.npz"))           # an old run's single file
    assert isinstance(old.x, np.ndarray) and (old.x == x).all() and (old.split == ds.split).all()
    assert (old.part("test")[0] == x[ds.split == 2]).all()
    st = Store(tmp_path / "store")
    d = st.put_file(save_dataset(ds, tmp_path / "dataset.json", st))
    assert (load_dataset(st.path(d)).x[:] == x).all()
    shard = st.path(json.loads(st.read_bytes(d))["shards"][0]["digest"])
    os.chmod(shard, 0o644); b = bytearray(shard.read_bytes()); b[-1] ^= 1; shard.write_bytes(bytes(b))
    with pytest.raises(IntegrityError, match="is corrupt"):
        load_dataset(st.path(d))
    with pytest.raises(ValueError, match="not a dataset index"):
        load_dataset(st.path(st.put_bytes(b'{"format": "other"}', "x.json")))
