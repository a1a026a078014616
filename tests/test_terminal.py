"""User strings reach a terminal escaped: a name cannot forge a line or send an escape sequence (issue 23 item 14)."""
from pathlib import Path
import numpy as np
from conftest import cli, make_workbook
from mlops_nb.core.config import load_settings
from mlops_nb.core.predlog import PredictionLog

EVIL = "cat\n2026-01-01  forged  0  x@1  dog\x1b[2J"


def test_the_predictions_listing_escapes_labels_and_tags(tmp_path):
    wb = make_workbook(tmp_path)
    log = PredictionLog(load_settings(wb).predictions, flush_ms=10)
    log.add("q1", ("toy", 1, "sha256:aa"), np.zeros((1, 1, 8, 8), np.uint8), np.full((1, 2), 0.5, np.float32), [EVIL], 1.0,
            "/v1/predict", tags={"camera": "a\x1b]0;title\x07"})
    log.feedback("q1", 0, "dog\r\nok")
    log.close()
    p = cli("predictions", settings=wb)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2, lines                                 # the heading and one row: nothing forged
    assert not any(c in p.stdout for c in "\x1b\x07\r")
    assert "cat\\n2026-01-01  forged  0  x@1  dog\\x1b[2J" in lines[1] and "camera=a\\x1b]0;title\\x07" in lines[1]
    assert "dog\\r\\nok" in lines[1]


def _hostile_run(wb) -> str:
    "A run folder whose record carries control characters in its profile and error (a run folder may come from anyone)."
    import json
    rid = "20260101-000000-dead"
    d = Path(wb).parent / "runs" / rid
    d.mkdir(parents=True)
    rec = {"run_id": rid, "status": "failed", "pipeline": "build", "profile": "smoke\x1b[2J\nforged  succeeded",
           "started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:00:01Z", "git": {"commit": "abc", "dirty": False},
           "params": {}, "env_digest": "sha256:00", "env": {}, "runner": None, "run_dir": str(d), "tmp": "",
           "stages": [{"name": "ingest", "status": "failed", "cached": False, "seconds": 1.0}], "metrics": {},
           "error": {"stage": "ingest", "message": "E: 1 problem(s):\n  /x/a\x1b]0;t\x07.png: bad"}}
    (d / "run.json").write_text(json.dumps(rec))
    return rid


def test_runs_and_show_escape_what_a_run_record_says(tmp_path):
    wb = make_workbook(tmp_path)
    rid = _hostile_run(wb)
    p = cli("runs", settings=wb)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 2 and "\x1b" not in p.stdout and "smoke\\x1b[2J\\nforged" in p.stdout, p.stdout
    p = cli("show", rid, settings=wb)
    assert p.returncode == 0, p.stderr
    assert not any(c in p.stdout for c in "\x1b\x07"), p.stdout
    assert "profile smoke\\x1b[2J\\nforged  succeeded" in p.stdout
    assert "\n  /x/a\\x1b]0;t\\x07.png: bad\n" in p.stdout                  # the problem list keeps its lines, escaped


def test_audit_escapes_why_and_who(tmp_path):
    from mlops_nb.monitor.govern import record
    wb = make_workbook(tmp_path)
    s = load_settings(wb)
    from mlops_nb.build.registry import registry_for
    registry_for(s).close()                                       # an (empty) registry: audit reads model names from it
    record(s, "note", "because\x1b[2J\n2026-01-01T00:00:00  root  release  toy@9  forged", by="eve\x1b]0;x\x07")
    p = cli("audit", settings=wb)
    assert p.returncode == 0, p.stderr
    assert not any(c in p.stdout for c in "\x1b\x07"), p.stdout
    assert len(p.stdout.splitlines()) == 1 and "because\\x1b[2J\\n2026-01-01T00:00:00  root  release" in p.stdout, p.stdout


def test_registry_show_and_history_escape_reasons(tmp_path):
    from toybundle import toy_bundle
    from mlops_nb.build.registry import registry_for
    wb = make_workbook(tmp_path)
    reg = registry_for(load_settings(wb))
    v = reg.register("toy-cnn", toy_bundle(reg.store, "terminal"))
    reg.record_apptest("toy-cnn", v, True, EVIL, None)
    reg.set_alias("toy-cnn", "staging", v, why=EVIL)
    reg.close()
    show, hist = cli("registry", "show", "toy-cnn@1", settings=wb), cli("registry", "history", "toy-cnn", settings=wb)
    assert show.returncode == 0 and hist.returncode == 0, show.stderr + hist.stderr
    for p, n in ((show, 8), (hist, 1)):
        assert not any(c in p.stdout for c in "\x1b\x07\r"), p.stdout
        assert "forged" not in "".join(l for l in p.stdout.splitlines() if "cat\\n2026" not in l), p.stdout    # only inside its line
        assert len(p.stdout.splitlines()) == n, p.stdout
    assert "staging     (none) -> v1" in hist.stdout, hist.stdout              # no `v-`


def test_alerts_escape_details(tmp_path):
    from mlops_nb.monitor.govern import raise_alerts
    wb = make_workbook(tmp_path)
    echoed = []
    fig = {"model": "toy-cnn", "version": 1, "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z",
           "total": {"checks": [{"check": "slice gap (cam\x1b[2J)", "status": "ALERT", "detail": EVIL, "value": 0.5, "threshold": 0.2}]}}
    raise_alerts(load_settings(wb), fig, echo=echoed.append)
    assert len(echoed) == 1 and "\x1b" not in echoed[0] and "\n" not in echoed[0], echoed
    p = cli("alerts", settings=wb)
    assert p.returncode == 0, p.stderr
    assert not any(c in p.stdout for c in "\x1b\x07\r") and len(p.stdout.splitlines()) == 3, p.stdout
    assert "slice gap (cam\\x1b[2J)" in p.stdout and "cat\\n2026-01-01  forged" in p.stdout


def test_command_errors_escape_what_they_quote(tmp_path):
    "An error naming a path the user gave (here, a source folder that is not one) prints its escape sequence escaped."
    wb = make_workbook(tmp_path)
    p = cli("run", "--profile", "smoke", "-p", "ingest.source=imagefolder:/tmp/no\x1b[2Jpe", settings=wb)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "\x1b" not in p.stderr and "/tmp/no\\x1b[2Jpe is not a folder" in p.stderr, p.stderr
