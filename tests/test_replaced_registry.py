"""A registry file deleted, or replaced by a restored copy, under a following service and under read-only commands:
the follower notices (another inode, or a shorter file), reopens, says so and counts it; while the file is missing it
keeps serving and creates nothing; read-only commands refuse a missing registry in one line instead of creating one."""
import shutil
import pytest
from conftest import cli, make_workbook
from toybundle import toy_bundle
from mlops_nb.core.config import load_settings
from mlops_nb.build.registry import registry_for, RegistryError
from mlops_nb.deploy.traffic import Follower


def remove(path):
    for p in path.parent.glob(path.name + "*"): p.unlink()           # registry.db, -wal, -shm: `rm .mlops/registry.db*`


def test_a_follower_reopens_a_registry_replaced_under_it(tmp_path, capfd):
    s = load_settings(make_workbook(tmp_path))
    reg = registry_for(s)
    v1, v2 = (reg.register("toy-cnn", toy_bundle(reg.store, t, w)) for t, w in (("one", 0.01), ("two", 0.02)))
    reg.set_alias("toy-cnn", "production", v1)
    reg.db.execute("VACUUM INTO ?", (str(tmp_path / "backup.db"),))   # a backup: production v1
    reg.close()
    f = Follower(s, "toy-cnn", "production")
    assert f.poll().primary.version == v1
    remove(s.registry)
    assert f.poll() is None and f.gone and not s.registry.exists()    # still serving v1; nothing created in its place
    assert "is missing" in capfd.readouterr().err
    assert f.poll() is None and capfd.readouterr().err == ""          # said once
    shutil.copy(tmp_path / "backup.db", s.registry)                     # restored: production v1, as served
    assert f.poll() is None and f.reopened == 1 and not f.gone
    assert "was replaced" in capfd.readouterr().err
    reg = registry_for(s); reg.set_alias("toy-cnn", "production", v2); reg.close()   # promote in the restored registry
    assert f.poll().primary.version == v2
    remove(s.registry)                                                  # replaced between two polls, never seen missing
    shutil.copy(tmp_path / "backup.db", s.registry)
    assert f.poll().primary.version == v1 and f.reopened == 2
    f.close()


def test_a_follower_refuses_to_start_on_a_missing_registry(tmp_path):
    s = load_settings(make_workbook(tmp_path))
    with pytest.raises(RegistryError, match="no registry at"): Follower(s, "toy-cnn", "production").poll()
    assert not s.registry.exists()


@pytest.mark.parametrize("args", [["registry", "ls"], ["registry", "show", "toy-cnn"], ["registry", "history", "toy-cnn"],
                                  ["registry", "promote", "toy-cnn@1", "--to", "staging"], ["audit"], ["audit", "toy-cnn@1"],
                                  ["monitor"], ["serve", "--model", "toy-cnn@1", "--port", "0"], ["predict", "toy-cnn@1", "x.png"],
                                  ["apptest", "toy-cnn@1"], ["approve", "toy-cnn@1", "--why", "read it"], ["release", "toy-cnn@1"],
                                  ["rollback", "toy-cnn"], ["export", "toy-cnn@1", "--to", "out"]])
def test_commands_refuse_a_missing_registry_instead_of_creating_one(tmp_path, args):
    settings = make_workbook(tmp_path)
    s = load_settings(settings)
    p = cli(*args, settings=settings)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and f"no registry at {s.registry}" in lines[0], p.stderr
    assert not s.registry.exists()


def test_a_following_service_serves_what_the_restored_registry_promotes(tmp_path):
    import json, os, socket, subprocess, time, urllib.request
    from conftest import BIN
    settings = make_workbook(tmp_path)
    s = load_settings(settings)
    reg = registry_for(s)
    v1, v2 = (reg.register("toy-cnn", toy_bundle(reg.store, t, w)) for t, w in (("one", 0.01), ("two", 0.02)))
    reg.set_alias("toy-cnn", "production", v1)
    reg.db.execute("VACUUM INTO ?", (str(tmp_path / "backup.db"),))
    reg.close()
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]
    err = tmp_path / "serve.err"
    p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--model", "toy-cnn@production", "--port", str(port), "--no-grpc"],
                         env={**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled"},
                         stdout=subprocess.DEVNULL, stderr=err.open("w"), stdin=subprocess.DEVNULL)
    def serving(timeout=60):
        "The version /v1/model names once the service answers."
        t = time.monotonic()
        while True:
            try: return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=5))["version"]
            except OSError:
                assert p.poll() is None and time.monotonic() - t < timeout, err.read_text()
                time.sleep(0.1)
    def metrics() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    def until(version, timeout=30):
        t = time.monotonic()
        while serving() != version:
            assert time.monotonic() - t < timeout, err.read_text()
            time.sleep(0.1)
    try:
        until(v1)
        remove(s.registry)
        t = time.monotonic()
        while "is missing" not in err.read_text():                     # the service saw it gone, and keeps serving
            assert time.monotonic() - t < 30, err.read_text()
            time.sleep(0.1)
        assert serving() == v1 and not s.registry.exists()
        assert "mlops_nb_registry_missing 1.0" in metrics()
        shutil.copy(tmp_path / "backup.db", s.registry)
        reg = registry_for(s); reg.set_alias("toy-cnn", "production", v2); reg.close()
        until(v2)
        m = metrics()
        assert "mlops_nb_registry_reopened_total 1.0" in m and "mlops_nb_registry_missing 0.0" in m, m
    finally:
        p.terminate(); p.wait(30)
    text = err.read_text()
    assert "was replaced (another file at its path): reopened it" in text, text
    assert "not swapping" not in text, text
