"""The data lake as a data scientist meets it: camera frames in a bucket of a real S3 API on loopback (moto's server
mode, reached by s3fs as any S3: no mock of the client calls) ingested as `imagefolder:s3://...` with the checks, cache
and shards of a local folder, and the same frames as a warehouse's Parquet export (`parquet:s3://...`)."""
import io
import pytest
from conftest import cli


@pytest.fixture
def lake(s3, tmp_path):
    "Camera-like frames (`mlops_nb.build.frames`, 96 px JPEGs) of three classes, the same in a local folder and in the bucket "
    "`lake` under `frames/`: yields (local folder, s3fs file system)."
    import s3fs
    from mlops_nb.build.frames import make_frame, CLASSES
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("lake")
    root = tmp_path / "frames"
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(8):
            b = io.BytesIO(); make_frame(c, 1, i, 96).save(b, "JPEG", quality=90)
            (root / c / f"{i:03d}.jpg").write_bytes(b.getvalue())
            fs.pipe_file(f"lake/frames/{c}/{i:03d}.jpg", b.getvalue())
    yield root, fs


def test_a_bucket_ingests_as_the_same_folder_on_disk_does_and_a_reingest_fetches_only_what_changed(lake, tmp_path):
    from mlops_nb.build.data import ingest
    from mlops_nb.core.store import Store
    root, fs = lake
    store = Store(tmp_path / "store")
    local = ingest(f"imagefolder:{root}", tmp_path / "a", 32, "RGB", store=store, workers=2)
    remote = ingest("imagefolder:s3://lake/frames", tmp_path / "b", 32, "RGB", store=store, workers=2)
    assert remote.manifest["n"] == local.manifest["n"] == 24 and remote.stats["decoded"] == 24
    assert remote.manifest["digests"] == local.manifest["digests"]           # the same pixels, split the same way
    assert remote.manifest["source"] == "imagefolder:s3://lake/frames"
    again = ingest("imagefolder:s3://lake/frames", tmp_path / "c", 32, "RGB", store=store, workers=2)
    assert again.stats["decoded"] == 0 and again.manifest["digests"] == remote.manifest["digests"]   # ETags unchanged: nothing fetched
    fs.pipe_file("lake/frames/cat/003.jpg", (root / "cat" / "004.jpg").read_bytes())             # one object replaced
    changed = ingest("imagefolder:s3://lake/frames", tmp_path / "d", 32, "RGB", store=store, workers=2)
    assert changed.stats["decoded"] == 1 and changed.manifest["digests"] != remote.manifest["digests"]


def test_a_bucket_is_checked_as_a_folder_is(lake, tmp_path):
    from mlops_nb.build.data import ingest
    from mlops_nb.core.images import DataValidationError
    root, fs = lake
    fs.pipe_file("lake/frames/dog/readme.txt", b"x")
    fs.pipe_file("lake/frames/dog/broken.jpg", b"\xff\xd8\xff" + b"0" * 100)
    fs.pipe_file("lake/frames/cat/old/000.jpg", (root / "cat" / "000.jpg").read_bytes())
    fs.pipe_file("lake/frames/stray.jpg", b"x")
    with pytest.raises(DataValidationError) as e: ingest("imagefolder:s3://lake/frames", tmp_path / "x", 32, "RGB", workers=2)
    msg = str(e.value)
    for path, why in (("s3://lake/frames/dog/readme.txt", "not an image file"), ("s3://lake/frames/dog/broken.jpg", "corrupt or unreadable"),
                      ("s3://lake/frames/cat/old", "nested folder"), ("s3://lake/frames/stray.jpg", "file outside any class folder")):
        assert f"{path}: {why}" in msg, msg
    ok = ingest("imagefolder:s3://lake/frames", tmp_path / "y", 32, "RGB", workers=2, skip_bad=True)
    assert ok.manifest["n"] == 24 and len(ok.skipped) == 4
    with pytest.raises(DataValidationError, match="no such folder"): ingest("imagefolder:s3://lake/nothing", tmp_path / "z", 32, "RGB")


def test_a_parquet_export_in_the_bucket_ingests_the_same_images(lake, tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    from mlops_nb.build.data import ingest
    root, fs = lake
    files = sorted(root.glob("*/*.jpg"))
    t = pa.table({"frame": [f.read_bytes() for f in files], "species": [f.parent.name for f in files],
                  "path": [f"frames/{f.parent.name}/{f.name}" for f in files]})
    with fs.open("lake/export/part-0.parquet", "wb") as f: pq.write_table(t, f)
    by_bytes = ingest("parquet:s3://lake/export", tmp_path / "a", 32, "RGB", image_column="frame", label_column="species")
    folder = ingest(f"imagefolder:{root}", tmp_path / "b", 32, "RGB", workers=2)
    assert by_bytes.manifest["n"] == 24 and by_bytes.manifest["classes"] == folder.manifest["classes"]
    assert sorted(by_bytes.dataset.files["sha256"]) == sorted(folder.dataset.files["sha256"])
    with fs.open("lake/paths.parquet", "wb") as f: pq.write_table(t.select(["path", "species"]), f)   # paths, relative to the table
    by_path = ingest("parquet:s3://lake/paths.parquet", tmp_path / "c", 32, "RGB", image_column="path", label_column="species")
    assert sorted(by_path.dataset.files["sha256"]) == sorted(folder.dataset.files["sha256"])


def test_a_url_with_credentials_is_refused_without_echoing_them(lake, tmp_path, workbook):
    r = cli("run", "-p", "ingest.source=imagefolder:s3://AKIA:hunter2@lake/frames", settings=workbook)
    assert r.returncode != 0 and "carries credentials" in r.stderr and "hunter2" not in r.stderr + r.stdout
