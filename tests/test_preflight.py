"""`mlops-nb run` refuses, before any stage runs, parameters whose bundle the register stage would refuse: a model name that
already holds versions of another input shape (found when camera-sized images reached register after 7.5 minutes of work)."""
import sqlite3, time
import pytest
from conftest import cli, make_workbook
from toybundle import toy_bundle
from mlops_nb.core.config import load_settings


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    "A workbook whose registry holds digits-cnn@1, a real bundle taking 1x8x8 images: what a digits run registers."
    settings = make_workbook(tmp_path_factory.mktemp("preflight"))
    from mlops_nb.build.registry import registry_for
    s = load_settings(settings)
    reg = registry_for(s)
    assert reg.register("digits-cnn", toy_bundle(reg.store, "preflight", shape=(1, 8, 8))) == 1
    reg.close()
    return settings, s


@pytest.mark.parametrize("args,gives,back", [
    (["-p", "ingest.image_size=16"], "1x16x16", "-p ingest.image_size=8"),
    (["-p", "ingest.mode=RGB"], "3x8x8", "-p ingest.mode=L")])
def test_other_input_shape_refused_before_anything_runs(registered, args, gives, back):
    settings, s = registered
    objects = sorted(p for p in (s.store / "objects").rglob("*") if p.is_file())
    t0 = time.perf_counter()
    p = cli("run", "--profile", "smoke", *args, settings=settings, timeout=120)
    took = time.perf_counter() - t0
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("mlops-nb run: error: model digits-cnn (the name ingest.source 'digits' gives) is registered "
                               f"with inputs 1x8x8, but these parameters give {gives}"), p.stderr
    assert f"-p register.model_name=digits-cnn-{gives}" in p.stderr and f"keep 1x8x8 with {back}" in p.stderr, p.stderr
    assert took < 15, took                                          # refused at once, not after ingest, train and package
    assert p.stdout == ""                                           # no run id, no report
    assert not s.runs.exists() or not any(s.runs.iterdir())          # no run folder, no stage started
    assert sorted(p for p in (s.store / "objects").rglob("*") if p.is_file()) == objects   # no stage output stored
    if s.lineage.exists():
        assert sqlite3.connect(s.lineage).execute("SELECT COUNT(*) FROM executions").fetchone()[0] == 0


def test_named_model_refused_too(registered):
    "An explicit register.model_name that holds another shape is refused the same way, naming the parameter."
    settings, s = registered
    p = cli("run", "--profile", "smoke", "-p", "ingest.image_size=16", "-p", "register.model_name=digits-cnn",
            settings=settings, timeout=120)
    assert p.returncode == 2 and "model digits-cnn (register.model_name) is registered with inputs 1x8x8" in p.stderr, p.stderr


def test_no_registry_is_not_created(tmp_path):
    "A workbook with no registry yet passes the check, and still has none afterwards (the check only reads)."
    from mlops_nb.pipeline.runner import check_registered_shape, stage_params
    from mlops_nb.core.params import resolve_params
    s = load_settings(make_workbook(tmp_path))
    check_registered_shape(s, resolve_params(stage_params(s), {}, ["ingest.image_size=16"]))
    assert not s.registry.exists()
