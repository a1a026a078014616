"""`mlops-nb apptest`: the smoke run's version tested as an application; the verdict lands on the registry version and
the production gate reads it; a gate that cannot hold fails the test with the reason recorded."""
import json
from pathlib import Path
from conftest import cli


def test_apptest_passes_and_is_recorded(smoke):
    settings, _, _ = smoke
    p = cli("apptest", "digits-cnn@staging", "--seconds", "1", settings=settings, timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout
    assert "ok    replay: /v1/predict/image (PNG uploads)" in p.stdout and "FAIL" not in p.stdout
    assert "error contract: 12 of 12" in p.stdout
    report = Path(p.stderr.strip().rsplit("report: ", 1)[1])
    rep = json.loads(report.read_text())
    assert rep["passed"] and rep["load"]["requests"] > 0 and rep["load"]["errors"] == 0
    assert all(c["labels_equal"] for c in rep["checks"] if c["check"].startswith("replay"))
    assert (report.parent / "predictions.db").exists()                 # test traffic has its own log, apart from production's
    shown = cli("registry", "show", "digits-cnn@staging", settings=settings)
    assert "application test passed" in shown.stdout, shown.stdout


def test_a_gate_that_cannot_hold_fails_with_its_reason(smoke, tmp_path):
    import configparser
    settings, _, _ = smoke
    cp = configparser.ConfigParser(interpolation=None); cp.optionxform = str
    cp.read(settings)
    if not cp.has_section("apptest"): cp.add_section("apptest")
    cp["apptest"]["p99_ms"] = "0.001"                                   # no service answers in a microsecond
    s2 = tmp_path / "settings.ini"
    with open(s2, "w") as f: cp.write(f)
    p = cli("apptest", "digits-cnn@staging", "--seconds", "1", "--no-record", "--json", settings=s2, timeout=300)
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    failed = [c["check"] for c in rep["checks"] if not c["passed"]]
    assert failed == ["load: p99"] and "FAILED: load: p99" in p.stderr
    p = cli("apptest", "digits-cnn", settings=settings)
    assert p.returncode == 2 and "NAME@VERSION" in p.stderr
