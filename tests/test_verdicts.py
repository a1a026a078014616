"""Application-test verdicts are append-only events: a by-hand verdict adds one at its own time, never replaces the
pipeline's; the production gate follows the latest; a registry from before verdicts had a table keeps its verdicts."""
import json, sqlite3, time
import pytest
from conftest import cli, make_workbook
from toybundle import toy_bundle
from mlops_nb.core.config import load_settings
from mlops_nb.build.registry import registry_for


def apptests(settings) -> list:
    p = cli("audit", "toy-cnn", "--json", settings=settings)
    assert p.returncode == 0, p.stderr
    return [e for e in json.loads(p.stdout) if e["action"].startswith("application test")]


def test_every_verdict_is_its_own_event_and_the_gate_follows_the_latest(tmp_path):
    settings = make_workbook(tmp_path)
    s = load_settings(settings)
    reg = registry_for(s)
    v = reg.register("toy-cnn", toy_bundle(reg.store, "verdicts"))
    report = tmp_path / "report.json"; report.write_text("{}")
    time.sleep(0.01)        # event times are kept to the millisecond: the verdict's own time must differ from registering's
    reg.record_apptest("toy-cnn", v, True, "replay exact on every route", {"path": str(report)})
    gate = lambda: next(c for c in reg.production_gate("toy-cnn", v, {**s.gates, "require_approval": False}) if c["check"] == "application test")
    assert gate()["passed"]
    p = cli("registry", "apptest", "toy-cnn@1", "failed", "--why", "a drill", settings=settings)
    assert p.returncode == 0, p.stderr
    assert not gate()["passed"] and "failed by hand" in gate()["detail"]          # the latest verdict counts
    ev = apptests(settings)
    assert [e["action"] for e in ev] == ["application test passed", "application test failed"], ev
    assert ev[0]["why"] == "replay exact on every route" and "by hand" in ev[1]["why"] and "a drill" in ev[1]["why"]
    registered = next(e for e in json.loads(cli("audit", "toy-cnn", "--json", settings=settings).stdout) if e["action"] == "registered")
    assert registered["time"] < ev[0]["time"] < ev[1]["time"]                      # each at its own time
    assert ev[1]["refs"] == {"path": str(report)}                                   # the override keeps the test's report
    assert cli("registry", "apptest", "toy-cnn@1", "passed", "--why", "drill over", settings=settings).returncode == 0
    assert gate()["passed"] and [e["action"].split()[-1] for e in apptests(settings)] == ["passed", "failed", "passed"]
    for sql in ("UPDATE apptest_verdicts SET passed = 1", "DELETE FROM apptest_verdicts"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"): reg.db.execute(sql)
    reg.close()


def test_a_registry_from_before_keeps_its_verdicts(tmp_path):
    settings = make_workbook(tmp_path)
    s = load_settings(settings)
    reg = registry_for(s)
    v = reg.register("toy-cnn", toy_bundle(reg.store, "old"))
    created = reg.version("toy-cnn", v)["created"]
    reg.db.executescript("DROP TRIGGER apptest_verdicts_append_only; DROP TRIGGER apptest_verdicts_no_delete; DROP TABLE apptest_verdicts; "
                         "UPDATE versions SET apptest_passed = 1, apptest_detail = 'replay 200/200'")    # as an older registry wrote it
    reg.close()
    reg = registry_for(s)
    rows = reg.apptest_verdicts("toy-cnn")
    assert [(r["version"], r["passed"], r["detail"], r["at"]) for r in rows] == [(v, 1, "replay 200/200", created)]
    reg.close()
    assert len(registry_for(s).apptest_verdicts("toy-cnn")) == 1                    # migrated once
    assert [e["why"] for e in apptests(settings)] == ["replay 200/200"]
