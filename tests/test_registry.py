"""The model registry: round trip, gated promotion with reasons, champion/challenger, history --at, rollback,
a tampered bundle, and concurrent registration."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import cli, make_workbook, run_record
from mlops_nb.config import load_settings
from mlops_nb.registry import Registry, now_iso
from mlops_nb.store import IntegrityError, Store


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    "Two registered versions: v1 from the smoke profile (weaker), v2 trained longer (stronger)."
    root = tmp_path_factory.mktemp("registrywb")
    settings = make_workbook(root)
    text = settings.read_text().replace("min_accuracy = 0.95", "min_accuracy = 0.8").replace("max_recall_gap = 0.10", "max_recall_gap = 0.6")
    settings.write_text(text)
    a = cli("run", "--profile", "smoke", settings=settings)
    b = cli("run", "--profile", "smoke", "-p", "train.epochs=[8]", "-p", "train.channels=[16]", settings=settings)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    return settings, run_record(settings, a), run_record(settings, b)


def test_round_trip(two_versions):
    settings, ra, rb = two_versions
    p = cli("registry", "ls", settings=settings)
    assert p.returncode == 0 and "digits-cnn  latest v2  staging->v2" in p.stdout
    p = cli("registry", "show", "digits-cnn@1", settings=settings)
    assert p.returncode == 0 and ra["stages"][3]["outputs"]["bundle"] in p.stdout and ra["run_id"] in p.stdout
    p = cli("registry", "show", "digits-cnn@staging", settings=settings)
    assert "digits-cnn@2  [staging]" in p.stdout
    assert ra["metrics"]["register/version"] == 1 and rb["metrics"]["register/version"] == 2
    p = cli("registry", "show", "digits-cnn@canary", settings=settings)
    assert p.returncode == 2 and "no alias 'canary'" in p.stderr


def test_gates_promotion_history_rollback(two_versions):
    settings, ra, rb = two_versions
    p = cli("registry", "promote", "digits-cnn@2", "--to", "production", settings=settings)
    assert p.returncode == 1 and "application test: application test not run yet" in p.stderr
    for v in (1, 2):
        assert cli("registry", "apptest", f"digits-cnn@{v}", "passed", "--detail", "replay ok", settings=settings).returncode == 0
    p = cli("registry", "promote", "digits-cnn@2", "--to", "production", "--why", "first release", settings=settings)
    assert p.returncode == 0, p.stderr
    assert "no current production version" in p.stdout and "digits-cnn@production: v- -> v2" in p.stdout
    t_v2 = now_iso()
    time.sleep(0.05)
    # the weaker v1 as challenger: significantly worse by McNemar on the same test split
    p = cli("registry", "promote", "digits-cnn@1", "--to", "production", settings=settings)
    assert p.returncode == 1
    assert "champion/challenger: candidate" in p.stderr and "McNemar exact" in p.stderr and "significantly worse" in p.stderr
    assert "accuracy:" not in p.stderr                                 # thresholds passed, only the comparison failed
    p = cli("registry", "promote", "digits-cnn@1", "--to", "production", "--force", settings=settings)
    assert p.returncode == 2 and "--force needs --why" in p.stderr
    p = cli("registry", "promote", "digits-cnn@1", "--to", "production", "--force", "--why", "drill", settings=settings)
    assert p.returncode == 0 and "(forced)" in p.stdout
    p = cli("registry", "history", "digits-cnn", "--at", t_v2, settings=settings)
    assert "digits-cnn@production -> v2" in p.stdout and "digits-cnn@staging -> v2" in p.stdout
    p = cli("registry", "history", "digits-cnn", "--at", "2000-01-01", settings=settings)
    assert "no alias" in p.stdout
    p = cli("registry", "history", "digits-cnn", "--at", "yesterday", settings=settings)
    assert p.returncode == 2 and "is not a time" in p.stderr
    p = cli("registry", "rollback", "digits-cnn", settings=settings)
    assert p.returncode == 0 and "digits-cnn@production: v1 -> v2" in p.stdout
    lines = cli("registry", "history", "digits-cnn", "--alias", "production", settings=settings).stdout.splitlines()
    assert [l.split()[2:5] for l in lines] == [["v-", "->", "v2"], ["v2", "->", "v1"], ["v1", "->", "v2"]]
    assert "FORCED  drill" in lines[1] and "first release" in lines[0]


def test_tampered_bundle_is_refused(two_versions, tmp_path):
    settings, ra, _ = two_versions
    s = load_settings(settings)
    reg = Registry(s.registry, Store(s.store))
    bundle = reg.get("digits-cnn@1")["bundle"]
    obj = Store(s.store)._obj(bundle)
    good = obj.read_bytes()
    try:
        data = bytearray(good); data[len(data) // 3] ^= 0x01
        obj.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="content hashes to"):
            reg.load("digits-cnn@1")
        p = cli("registry", "promote", "digits-cnn@1", "--to", "production", settings=settings)   # the gate loads both bundles
        assert p.returncode == 2 and "is corrupt" in p.stderr
    finally:
        obj.write_bytes(good)
    assert reg.load("digits-cnn@1").labels[0] == "0"


WORKER = r"""
import os, sys, json
from mlops_nb.config import load_settings
from mlops_nb.registry import Registry
from mlops_nb.store import Store
s = load_settings(); reg = Registry(s.registry, Store(s.store))
k = int(sys.argv[1]); out = []
for j in range(3):
    d = reg.store.put_bytes(f"bundle {k}-{j}".encode(), "b.zip")
    v = reg.register("concurrent", d, {"test/accuracy": 0.99, "test/recall_gap": 0.0}, f"w{k}")
    reg.set_alias("concurrent", "staging", v, why=f"worker {k}")
    out.append([d, v])
print(json.dumps(out))
"""


def test_concurrent_registration_loses_nothing(tmp_path):
    settings = make_workbook(tmp_path)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(k)], env=env, stdout=subprocess.PIPE, text=True) for k in range(8)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    s = load_settings(settings)
    reg = Registry(s.registry, Store(s.store))
    versions = reg.versions("concurrent")
    assert [v["version"] for v in versions] == list(range(1, 25))                     # 24 versions, no gap, no duplicate
    assert {v["bundle"]: v["version"] for v in versions} == {d: v for r in results for d, v in r}
    hist = reg.history("concurrent", alias="staging")
    assert len(hist) == 24
    assert all(h["from_version"] == prev["to_version"] for prev, h in zip(hist, hist[1:]))   # one consistent chain
    assert reg.aliases("concurrent")["staging"] == hist[-1]["to_version"]
    assert reg.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
