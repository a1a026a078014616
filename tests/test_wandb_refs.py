"""W&B offline keeps no second copy of the store: a stage's large outputs, and a dataset's shards, are recorded in W&B by
reference to their store objects (found with 1.8 GB in `.mlops/wandb-data` beside a 1.8 GB store)."""
import base64, hashlib, json, os
from pathlib import Path
import pytest
from conftest import make_workbook
from mlops_nb.core.config import load_settings



def wandb_bytes(path) -> bytes:
    "The records of a W&B .wandb file joined again: it is written in LevelDB's log format (32 KB blocks, each record "
    "cut where a block ends, 7-byte headers between the pieces), so a value can straddle a header in the raw bytes."
    b, out, pos = Path(path).read_bytes(), [], 7                      # after the file's header (:W&B, magic, version)
    while pos + 7 <= len(b):
        left = 32768 - pos % 32768
        if left < 7: pos += left; continue                             # a block's padding
        n = int.from_bytes(b[pos + 4:pos + 6], "little")
        out.append(b[pos + 7:pos + 7 + n]); pos += 7 + n
    return b"".join(out)

def folder_bytes(p) -> int:
    return sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file())


def md5_b64(data: bytes) -> bytes:
    "The digest W&B gives a manifest entry."
    return base64.b64encode(hashlib.md5(data).digest())


@pytest.fixture
def offline(tmp_path, monkeypatch):
    "Settings of a scratch workbook with W&B offline (no server is needed: offline runs are written locally)."
    monkeypatch.setenv("WANDB_MODE", "offline")
    for k in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"): monkeypatch.delenv(k, raising=False)
    s = load_settings(make_workbook(tmp_path))
    run_dir = s.runs / "20260101-000000-abcd"
    run_dir.mkdir(parents=True)
    yield s, run_dir
    for k in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "MLOPS_NB_SETTINGS", "WANDB_SILENT"):
        os.environ.pop(k, None)                                      # Stage's apply_env set them for this scratch workbook


def test_large_output_is_not_copied_into_wandb_staging(offline):
    from mlops_nb.core.tracking import Stage
    s, run_dir = offline
    data = os.urandom(4 << 20)                                       # a 4 MB dataset
    with Stage("ingest", {}, {}, str(run_dir), settings=s) as st:
        assert st.wandb is not None and st.wandb.settings.mode == "offline"
        (st.work / "dataset.npz").write_bytes(data)
        before = folder_bytes(s.wandb_data_dir)
        d = st.output("dataset", st.work / "dataset.npz", kind="dataset")
        grew = folder_bytes(s.wandb_data_dir) - before
    assert grew < 100_000, f"W&B's data folder grew by {grew} bytes: a copy of the 4 MB output"
    assert folder_bytes(s.wandb_data_dir) < 1 << 20
    assert st.store.read_bytes(d) == data                            # the one copy: in the store
    blob = b"".join(wandb_bytes(f) for f in (s.wandb_dir / "wandb").rglob("*.wandb"))
    assert st.store.path(d).as_uri().encode() in blob and md5_b64(data) in blob and d.encode() in blob


def test_dataset_shards_are_referenced_and_shared_between_versions(offline):
    "A dataset as an index plus shards in the store: every shard is a reference; an unchanged shard is the same entry."
    from mlops_nb.core.tracking import Stage
    s, run_dir = offline
    same = os.urandom(2 << 20)
    blobs, uris = [], []
    for version in range(2):
        with Stage("ingest", {}, {}, str(run_dir), settings=s) as st:
            before = folder_bytes(s.wandb_data_dir)
            shards = {"shards/000.npz": st.store.put_bytes(same, "shard-000"),
                      "shards/001.npz": st.store.put_bytes(os.urandom(2 << 20), "shard-001")}   # changes each version
            (st.work / "index.json").write_text(json.dumps({"version": version, "shards": shards}))
            d = st.output("dataset", st.work / "index.json", kind="dataset", refs=shards)
            grew = folder_bytes(s.wandb_data_dir) - before
            with pytest.raises(LookupError, match="not in the store"):
                st.output("other", st.work / "index.json", refs={"shards/x.npz": "sha256:" + "0" * 64})
        assert grew < 100_000, f"W&B's data folder grew by {grew} bytes: shards copied"
        run = next(p for p in (s.wandb_dir / "wandb").glob("offline-run-*") if p.name.endswith(st.wandb_ref()["id"]))
        blobs.append(b"".join(wandb_bytes(f) for f in run.glob("*.wandb")))
        uris.append({k: st.store.path(v).as_uri().encode() for k, v in shards.items()})
        assert all(u in blobs[-1] for u in uris[-1].values()) and d.encode() in blobs[-1]
        assert all(dg.encode() in blobs[-1] for dg in shards.values())      # each entry's sha256, in the metadata
    assert uris[0]["shards/000.npz"] == uris[1]["shards/000.npz"]         # one store object, referenced by both versions
    assert all(md5_b64(same) in b for b in blobs) and uris[0]["shards/001.npz"] != uris[1]["shards/001.npz"]
