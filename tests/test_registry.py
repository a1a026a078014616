"""The model registry: round trip, gated promotion with reasons, champion/challenger, history --at, rollback,
tampered and missing bundles, no-op moves, and concurrent registration, promotion and rollback."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import cli, make_workbook, run_record, variant_bundle
from mlops_nb.core.config import load_settings
from mlops_nb.build.bundle import BundleUnusable
from mlops_nb.build.registry import Registry, RegistryError
from mlops_nb.core.times import stamp
from mlops_nb.core.store import Store


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
    p = cli("registry", "show", "digits-cnn@2", settings=settings)
    assert "application test passed" in p.stdout and "replay exact on every route" in p.stdout    # the pipeline's apptest stage
    assert f"report: run {rb['run_id']}, stage apptest" in p.stdout
    p = cli("registry", "apptest", "digits-cnn@2", "failed", settings=settings)
    assert p.returncode == 2 and "--why" in p.stderr                                 # an override needs its reason
    assert cli("registry", "apptest", "digits-cnn@2", "failed", "--why", "drill", settings=settings).returncode == 0
    p = cli("release", "digits-cnn@2", settings=settings)
    assert p.returncode == 1 and "application test: application test failed by hand (override by" in p.stderr
    assert cli("registry", "apptest", "digits-cnn@2", "passed", "--why", "drill over", settings=settings).returncode == 0
    p = cli("release", "digits-cnn@2", settings=settings)
    assert p.returncode == 1 and "approval: digits-cnn@2 is not approved" in p.stderr       # settings.ini: require_approval = true
    assert cli("approve", "digits-cnn@2", "--why", "QA read the report", settings=settings).returncode == 0
    p = cli("release", "digits-cnn@2", "--why", "first release", settings=settings)
    assert p.returncode == 0, p.stderr
    assert "no current production version" in p.stdout and "digits-cnn@production: (none) -> v2" in p.stdout
    t_v2 = stamp(digits=6)
    time.sleep(0.05)
    # the weaker v1 as challenger: significantly worse by McNemar on the same test split
    p = cli("release", "digits-cnn@1", settings=settings)
    assert p.returncode == 1
    assert "champion/challenger: candidate" in p.stderr and "McNemar exact" in p.stderr and "significantly worse" in p.stderr
    assert "accuracy:" not in p.stderr                                 # thresholds passed, only the comparison failed
    p = cli("release", "digits-cnn@1", "--force", settings=settings)
    assert p.returncode == 2 and "--force needs --why" in p.stderr
    p = cli("release", "digits-cnn@1", "--force", "--why", "drill", settings=settings)
    assert p.returncode == 0 and "(forced" in p.stdout
    p = cli("registry", "history", "digits-cnn", "--at", t_v2, settings=settings)
    assert "digits-cnn@production -> v2" in p.stdout and "digits-cnn@staging -> v2" in p.stdout
    p = cli("registry", "history", "digits-cnn", "--at", "2000-01-01", settings=settings)
    assert "no alias" in p.stdout
    p = cli("registry", "history", "digits-cnn", "--at", "yesterday", settings=settings)
    assert p.returncode == 2 and "is not a time" in p.stderr
    p = cli("rollback", "digits-cnn", settings=settings)
    assert p.returncode == 0 and "digits-cnn@production: v1 -> v2" in p.stdout
    p = cli("rollback", "digits-cnn", settings=settings)      # v1 was rolled back: nothing lies below v2
    assert p.returncode == 2 and "no earlier version" in p.stderr
    lines = cli("registry", "history", "digits-cnn", "--alias", "production", settings=settings).stdout.splitlines()
    assert [l.split()[2:5] for l in lines] == [["(none)", "->", "v2"], ["v2", "->", "v1"], ["v1", "->", "v2"]]
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
        with pytest.raises(BundleUnusable, match="digits-cnn@1: its bundle .* is corrupt"):
            reg.load("digits-cnn@1")
        p = cli("release", "digits-cnn@1", settings=settings)   # the gate loads both bundles
        assert p.returncode == 2 and "is corrupt" in p.stderr
    finally:
        obj.write_bytes(good)
    assert reg.load("digits-cnn@1").labels[0] == "0"



def fresh(settings: Path, tmp: Path, gates=True):
    "A settings file sharing `settings`' store (its real bundles) with an empty registry of its own."
    text = settings.read_text().replace(str(settings.parent / "registry.db"), str(tmp / "registry.db"))
    assert str(tmp / "registry.db") in text
    (tmp / "settings.ini").write_text(text)
    s = load_settings(tmp / "settings.ini")
    return tmp / "settings.ini", Registry(s.registry, Store(s.store))


def variants(reg, rec, n, tag):
    "`n` registered versions of model `m`: real bundles of one model, so champion/challenger always passes."
    base = rec["stages"][3]["outputs"]["bundle"]
    out = []
    for i in range(n):
        m = {k: rec["metrics"][k] for k in ("test/accuracy", "test/recall_gap")}
        v = reg.register("m", variant_bundle(reg.store, base, f"{tag}{i}"), m, run_id=rec["run_id"])
        report = reg.path.parent / f"report-{tag}{i}.json"
        report.write_text("{}")
        reg.record_apptest("m", v, True, "test", {"path": str(report)})
        reg.approve("m", v, "test")                           # settings.ini requires a reviewer's approval for production
        out.append(v)
    return out


GATES = {"min_accuracy": 0.8, "max_recall_gap": 0.6, "significance": 0.05}


def _flip(path: Path):
    data = bytearray(path.read_bytes()); data[len(data) // 2] ^= 0x01; path.write_bytes(bytes(data))


def test_every_read_verifies_the_bundle(two_versions, tmp_path):
    settings, _, rb = two_versions
    st, reg = fresh(settings, tmp_path)
    v1, v2 = variants(reg, rb, 2, "read")
    obj2, obj1 = reg.store._obj(reg.version("m", v2)["bundle"]), reg.store._obj(reg.version("m", v1)["bundle"])
    _flip(obj2)                                                              # one byte flipped
    for args in (["show", "m@2"], ["promote", "m@2", "--to", "staging"], ["promote", "m@2", "--to", "canary"],
                 ["promote", "m@2", "--to", "staging", "--force", "--why", "try"]):
        p = cli("registry", *args, settings=st)
        assert p.returncode == 2 and p.stdout == "", (args, p.stdout)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr                # one line ...
        assert "m@2" in p.stderr and str(obj2) in p.stderr and "corrupt" in p.stderr   # ... naming model, version, file
    import numpy as np
    np.save(rows := tmp_path / "rows.npy", np.zeros((2, 1, 8, 8), np.uint8))
    for args in (["predict", "m@2", str(rows)], ["apptest", "m@2"], ["approve", "m@2", "--why", "QA"], ["release", "m@2", "--why", "go"], ["release", "m@2", "--force", "--why", "try"],
                 ["export", "m@2", "--to", str(tmp_path / "out")], ["serve", "--model", "m@2", "--port", "1"]):
        p = cli(*args, settings=st, timeout=120)                                 # every other command that reads a bundle
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
        assert "m@2" in p.stderr and str(obj2) in p.stderr and "corrupt" in p.stderr, (args, p.stderr)
    assert not (tmp_path / "out").exists()
    p = cli("registry", "show", "m", settings=st)                                # the list flags it, and says so in its exit code
    assert p.returncode == 1 and "MISSING OR CORRUPT" in p.stdout and "(verified)" in p.stdout
    obj1.unlink()                                                                # a deleted bundle
    p = cli("registry", "promote", "m@1", "--to", "staging", settings=st)
    assert p.returncode == 2 and "m@1" in p.stderr and "missing from the store" in p.stderr
    with pytest.raises(BundleUnusable, match="m@1: its bundle .* missing"):
        reg.load("m@1")
    assert reg.history("m") == [] and reg.aliases("m") == {}                    # nothing moved
    v3, = variants(reg, rb, 1, "fifo")
    obj3 = reg.store._obj(reg.version("m", v3)["bundle"])
    obj3.unlink(); os.mkfifo(obj3)                                               # something that is not a file, in its place
    p = cli("registry", "show", "m@3", settings=st, timeout=60)                  # refused, not blocked on the FIFO
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and str(obj3) in p.stderr


def test_force_replaces_a_corrupt_production(two_versions, tmp_path):
    settings, _, rb = two_versions
    st, reg = fresh(settings, tmp_path)
    v1, v2 = variants(reg, rb, 2, "force")
    assert cli("release", "m@1", settings=st).returncode == 0
    _flip(reg.store._obj(reg.version("m", v1)["bundle"]))                      # production's bundle is corrupted
    p = cli("release", "m@2", settings=st)
    assert p.returncode == 1 and "champion/challenger: production v1 is unverifiable" in p.stderr
    p = cli("release", "m@2", "--force", "--why", "v1 is corrupt", settings=st)
    assert p.returncode == 0, p.stderr
    assert "FAIL champion/challenger" in p.stdout and "m@production: v1 -> v2" in p.stdout and "(forced" in p.stdout
    h = reg.history("m", alias="production")[-1]
    assert (h["from_version"], h["to_version"], h["forced"], h["why"]) == (1, 2, 1, "v1 is corrupt")


def test_no_op_moves_write_no_history(two_versions):
    settings, _, rb = two_versions
    s = load_settings(settings)
    reg = Registry(s.registry, Store(s.store))
    before = reg.history("digits-cnn")
    staging = reg.aliases("digits-cnn")["staging"]
    # re-registering the bundle staging already holds: its register stage executes again
    p = cli("run", "--profile", "smoke", "-p", "train.epochs=[8]", "-p", "train.channels=[16]", "--force-stage", "register",
            settings=settings)
    assert p.returncode == 0, p.stderr
    assert run_record(settings, p)["metrics"]["register/version"] == staging == rb["metrics"]["register/version"]
    p = cli("registry", "promote", f"digits-cnn@{staging}", "--to", "staging", settings=settings)
    assert p.returncode == 0 and "already" in p.stdout and "nothing changed" in p.stdout
    assert reg.history("digits-cnn") == before                                  # not one row more
    assert all(h["from_version"] != h["to_version"] for h in before)


def test_rollback_walks_down_the_history(two_versions, tmp_path):
    settings, _, rb = two_versions
    st, reg = fresh(settings, tmp_path)
    variants(reg, rb, 4, "walk")
    for v in (1, 2, 3, 4): reg.promote("m", v, "production", GATES)
    assert [reg.rollback("m")["to"] for _ in range(2)] == [3, 2]                 # down, not back and forth
    p = cli("rollback", "m", "--to", "4", settings=st)               # 4 was rolled back: promote it instead
    assert p.returncode == 2 and "not among the versions it held before" in p.stderr
    p = cli("rollback", "m", "--to", "1", "--why", "drill", settings=st)
    assert p.returncode == 0 and "m@production: v2 -> v1" in p.stdout
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("m")
    reg.promote("m", 3, "production", GATES)
    assert reg.rollback("m")["to"] == 1                                          # the version held before 3 was set
    assert [h["to_version"] for h in reg.history("m", alias="production")] == [1, 2, 3, 4, 3, 2, 1, 3, 1]
    for v in (1, 2, 3): reg.promote("m", v, "qa", GATES, why="rollback from v9 (only the words of one)")
    assert reg.rollback("m", "qa")["to"] == 2                                    # a promotion's reason does not make it a rollback
    h = " ".join(cli("registry", "rollback", "--help", settings=st).stdout.split())
    assert "before the current one" in h and "--to N" in h
    # one command per action: production moves with release and rollback, every other alias with registry promote and rollback
    p = cli("registry", "rollback", "m", "--alias", "production", settings=st)
    assert p.returncode == 2 and "mlops-nb rollback m" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = cli("registry", "promote", "m@2", "--to", "production", settings=st)
    assert p.returncode == 2 and "mlops-nb release m@2" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert reg.aliases("m")["production"] == 1                                    # nothing moved
    p = cli("registry", "rollback", "m", "--alias", "qa", settings=st)
    assert p.returncode == 0 and "m@qa: v2 -> v1" in p.stdout


WORKER = r"""
import json, random, sys
from mlops_nb.core.config import load_settings
from mlops_nb.build.registry import Registry, RegistryError
from mlops_nb.core.store import Store
s = load_settings(); reg = Registry(s.registry, Store(s.store))
k, versions = int(sys.argv[1]), json.loads(sys.argv[2])
gates = {"min_accuracy": 0.8, "max_recall_gap": 0.6, "significance": 0.05}
rng, done = random.Random(k), []
for j in range(5):
    if rng.random() < 0.35:
        try: done.append(["rollback", reg.rollback("m", why=f"worker {k}")["to"]])
        except RegistryError as e: done.append(["rollback refused", str(e)])
    else:
        v = rng.choice(versions)
        done.append(["promote", v, reg.promote("m", v, "production", gates, why=f"worker {k}").get("changed")])
print(json.dumps(done))
"""


def test_concurrent_promotions_and_rollbacks(two_versions, tmp_path):
    settings, _, rb = two_versions
    st, reg = fresh(settings, tmp_path)
    versions = variants(reg, rb, 3, "race")
    reg.promote("m", 1, "production", GATES)
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(st), "WANDB_MODE": "disabled"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(k), json.dumps(versions)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(8)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in outs]
    hist = reg.history("m", alias="production")
    done = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    moves = sum(1 for d in done for op in d if op[0] == "rollback" or (op[0] == "promote" and op[2]))
    assert len(hist) == 1 + moves                                                # every move each worker saw is one row, no more
    assert len({h["why"] for h in hist[1:]}) >= 2                                # they did race: more than one worker moved it
    assert all(h["from_version"] != h["to_version"] for h in hist)              # no row from vN to vN
    assert all(h["from_version"] == prev["to_version"] for prev, h in zip(hist, hist[1:]))   # one consistent chain
    for h in hist:
        if h["gate"]:                                                            # evidence against the champion replaced
            gate = json.loads(h["gate"])
            assert gate["champion"] == h["from_version"], h
            cc = next(c for c in gate["checks"] if c["check"] == "champion/challenger")
            assert h["from_version"] is None or f"production v{h['from_version']} " in cc["detail"], cc
    assert reg.aliases("m")["production"] == hist[-1]["to_version"]
    assert reg.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


REGISTER = r"""
import json, sys
from mlops_nb.core.config import load_settings
from mlops_nb.build.registry import Registry
from mlops_nb.core.store import Store
s = load_settings(); reg = Registry(s.registry, Store(s.store))
out = []
for d in json.loads(sys.argv[1]):
    v = reg.register("concurrent", d, {}, run_id="w")
    reg.set_alias("concurrent", "staging", v, why="worker")
    out.append([d, v])
print(json.dumps(out))
"""


def test_concurrent_registration_loses_nothing(two_versions, tmp_path):
    settings, _, rb = two_versions
    st, reg = fresh(settings, tmp_path)
    base = rb["stages"][3]["outputs"]["bundle"]
    bundles = [[variant_bundle(reg.store, base, f"reg{k}-{j}") for j in range(3)] for k in range(8)]
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(st)}
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER, json.dumps(b)], env=env, stdout=subprocess.PIPE, text=True)
             for b in bundles]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    versions = reg.versions("concurrent")
    assert [v["version"] for v in versions] == list(range(1, 25))                     # 24 versions, no gap, no duplicate
    assert {v["bundle"]: v["version"] for v in versions} == {d: v for r in results for d, v in r}
    hist = reg.history("concurrent", alias="staging")
    assert len(hist) == 24
    assert all(h["from_version"] == prev["to_version"] for prev, h in zip(hist, hist[1:]))   # one consistent chain
    assert reg.aliases("concurrent")["staging"] == hist[-1]["to_version"]
    assert reg.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_suggested_name_is_one_that_will_be_accepted(two_versions, tmp_path):
    "The refusal of another kind of bundle suggests a name it can be registered under, even when the obvious one is taken."
    import io, json as js, zipfile
    settings, _, rb = two_versions
    st, reg = fresh(settings, tmp_path)
    base = rb["stages"][3]["outputs"]["bundle"]
    def relabelled(labels, tag):
        src, out = zipfile.ZipFile(io.BytesIO(reg.store.read_bytes(base))), io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for info in src.infolist():
                data = js.dumps(labels).encode() if info.filename == "labels.json" else src.read(info)
                z.writestr(info, data + (tag.encode() if info.filename == "MODEL_CARD.md" else b""))
        return reg.store.put_bytes(out.getvalue(), "b.zip")
    reg.register("digits-cnn", base, {})
    other = relabelled([f"c{i}" for i in range(10)], "other")                    # same inputs, other labels
    reg.register("digits-cnn-1x8x8-10cls", relabelled(list("ABCDEFGHIJ"), "taken"), {})   # the obvious name, taken by a third kind
    with pytest.raises(RegistryError) as e:
        reg.register("digits-cnn", other, {})
    name = str(e.value).split("-p register.model_name=")[1]
    assert name == "digits-cnn-1x8x8-10cls-2" and reg.register(name, other, {}) == 1
