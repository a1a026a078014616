"""Stage cache, lineage store and the commands that read it: runs, show, lineage."""
import json, sqlite3
import pytest
from conftest import cli, make_workbook, run_record
from mlops_nb.core.store import Store


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    "A workbook with one executed smoke run."
    root = tmp_path_factory.mktemp("cachewb")
    settings = make_workbook(root)
    p = cli("run", "--profile", "smoke", settings=settings)
    assert p.returncode == 0, p.stderr
    return settings, run_record(settings, p)


def _executed(rec): return [s["name"] for s in rec["stages"] if not s["cached"]]


def test_unchanged_rerun_is_all_cached_and_starts_no_kernel(wb):
    settings, first = wb
    # a settings copy sharing runs, store and lineage but naming a kernel that does not exist:
    # if the runner started any kernel, this run would fail
    nokernel = settings.parent / "nokernel.ini"
    nokernel.write_text(settings.read_text().replace("kernel = python3", "kernel = no-such-kernel"))
    p = cli("run", "--profile", "smoke", settings=nokernel)
    assert p.returncode == 0, p.stderr
    rec = run_record(settings, p)
    assert rec["status"] == "succeeded" and _executed(rec) == []
    assert all(s["cached_from"] == first["run_id"] for s in rec["stages"])
    assert [s["outputs"] for s in rec["stages"]] == [s["outputs"] for s in first["stages"]]
    assert rec["metrics"] == first["metrics"]
    run_dir = settings.parent / "runs" / rec["run_id"]
    assert (run_dir / "03_evaluate.html").is_file() and (run_dir / "index.html").is_file()   # the report is complete


def test_changed_evaluate_parameter_reexecutes_only_evaluate(wb):
    settings, first = wb
    p = cli("run", "--profile", "smoke", "-p", "evaluate.mistakes=4", settings=settings)
    assert p.returncode == 0, p.stderr
    assert _executed(run_record(settings, p)) == ["evaluate"]


def test_force_stage_reexecutes_it_and_its_dependents(wb):
    settings, _ = wb
    p = cli("run", "--profile", "smoke", "--force-stage", "train", settings=settings)
    assert p.returncode == 0, p.stderr
    assert _executed(run_record(settings, p)) == ["train", "evaluate", "package", "register", "apptest"]
    p = cli("run", "--profile", "smoke", "--force", settings=settings)
    assert _executed(run_record(settings, p)) == ["ingest", "train", "evaluate", "package", "register", "apptest"]
    p = cli("run", "--profile", "smoke", "--force-stage", "trian", settings=settings)
    assert p.returncode == 2 and "unknown stage" in p.stderr


@pytest.mark.slow      # about 25 s; the store's own digest checks stay in make test: `make test-slow`, keeping `make test` under 15 minutes
def test_tampered_cache_entry_is_not_reused(tmp_path):
    settings = make_workbook(tmp_path)
    rec = run_record(settings, cli("run", "--profile", "smoke", settings=settings))
    model = rec["stages"][1]["outputs"]["model"]
    obj = Store(tmp_path / "store")._obj(model)
    data = bytearray(obj.read_bytes()); data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))                                          # one byte flipped
    p = cli("run", "--profile", "smoke", settings=settings)
    assert p.returncode == 0, p.stderr
    rec2 = run_record(settings, p)
    assert _executed(rec2) == ["train"] and "unusable" in p.stderr      # evaluate's inputs are the same again
    assert rec2["stages"][1]["outputs"]["model"] == model                 # deterministic: the same model, rewritten
    assert Store(tmp_path / "store").path(model)                          # and the store holds it intact again


def test_runs_and_show(wb):
    settings, first = wb
    p = cli("runs", settings=settings)
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "status", "profile"] and "test/accuracy" in lines[0]
    ids = [l.split()[0] for l in lines[1:]]
    assert ids == sorted(ids, reverse=True) and first["run_id"] in ids    # newest first
    p = cli("show", first["run_id"][:17], settings=settings)                # a unique prefix
    assert p.returncode == 0
    assert first["stages"][1]["outputs"]["model"] in p.stdout and "executed" in p.stdout
    assert f"{first['metrics']['test/accuracy']}" in p.stdout and "index.html" in p.stdout


def test_lineage_reaches_the_raw_data(wb):
    settings, first = wb
    model = first["stages"][1]["outputs"]["model"]
    p = cli("lineage", model[:16], "--json", settings=settings)            # 'sha256:' + 9 hex digits
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["kind"] == "artifact" and out["ref"] == model
    train = out["trees"][0]["produced_by"]
    assert train["stage"] == "train" and train["params"]["epochs"] == [1] and len(train["git_commit"]) == 40
    ingest = train["inputs"][0]["produced_by"]
    assert ingest["stage"] == "ingest" and ingest["raw_data"] == "digits" and ingest["inputs"] == []
    p = cli("lineage", first["run_id"], settings=settings)
    assert p.returncode == 0 and "raw data: digits" in p.stdout and "<- train" in p.stdout
    p = cli("lineage", "zzzz", settings=settings)
    assert p.returncode == 2 and "matches no run" in p.stderr
    p = cli("lineage", "2", settings=settings)                               # every run id starts with 2
    assert p.returncode == 2 and "ambiguous" in p.stderr


def test_lineage_database_records_every_execution(wb):
    settings, first = wb
    db = sqlite3.connect(settings.parent / "lineage.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute("SELECT stage, status, cached, code_digest, env_digest, git_commit FROM executions WHERE run_id=? ORDER BY id",
                      (first["run_id"],)).fetchall()
    assert [r[0] for r in rows] == ["ingest", "train", "evaluate", "package", "register", "apptest"]
    assert all(r[1] == "succeeded" and r[2] == 0 and r[3].startswith("sha256:") and r[4] == first["env_digest"] for r in rows)
    n_art = db.execute("SELECT COUNT(*) FROM artifacts a JOIN executions e ON e.id = a.execution_id WHERE e.run_id=?",
                       (first["run_id"],)).fetchone()[0]
    assert n_art == 2 + (1 + 1) + (2 + 1) + (4 + 1) + (1 + 1) + (1 + 1)   # ingest out 2; train 1/1; evaluate 2/1; package 4/1; register 1/1; apptest 1/1
