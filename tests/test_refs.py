"""References and times from the command line that no model could have: huge or non-ASCII version numbers, and
monitoring windows before 1970, are refused with one line naming the reference and the form it takes, before anything runs."""
import pytest
from conftest import cli, make_workbook
from toybundle import toy_bundle
from mlops_nb.core.config import load_settings
from mlops_nb.build.registry import registry_for, RegistryError


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    "A workbook with one registered toy model, `toy-cnn@1`, and an empty prediction log."
    root = tmp_path_factory.mktemp("refs")
    settings = make_workbook(root)
    s = load_settings(settings)
    reg = registry_for(s)
    reg.register("toy-cnn", toy_bundle(reg.store, "refs"))
    reg.close()
    from mlops_nb.core.predlog import PredictionLog
    PredictionLog(s.predictions).close()
    return settings, s


def refused(p, ref):
    "Exit 2, one line on stderr naming `ref` and the form it takes, no traceback."
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert repr(ref) in lines[0] and "digits-cnn@3" in lines[0], lines[0]


@pytest.mark.parametrize("ref", ["toy-cnn@99999999999999999999999", "toy-cnn@\u00b2", "toy-cnn@9223372036854775808"])
def test_versions_no_model_could_have_are_refused_by_every_command(toy, tmp_path, ref):
    settings, s = toy
    image = tmp_path / "x.npy"
    for args in (["registry", "show", ref], ["registry", "promote", ref, "--to", "staging"], ["approve", ref, "--why", "x"],
                 ["release", ref, "--why", "x"], ["registry", "apptest", ref, "passed", "--why", "x"],
                 ["export", ref, "--to", str(tmp_path / "out")], ["serve", "--model", ref], ["predict", ref, str(image)],
                 ["monitor", "--model", ref], ["audit", ref]):
        refused(cli(*args, settings=settings), ref)
    assert not (tmp_path / "out").exists() and not list(s.runs.glob("*/run.json"))


def test_parse_version():
    from mlops_nb.build.registry import parse_version, VERSION_MAX
    assert parse_version("3") == 3 and parse_version(VERSION_MAX) == VERSION_MAX
    for bad in ("0", "-1", "\u0663", "\u00b2", "3.0", " 3", "1" * 30, True, VERSION_MAX + 1):
        with pytest.raises(RegistryError, match="digits-cnn@3"): parse_version(bad, "m@x")


@pytest.mark.parametrize("flag,value", [("--since", "99999999d"), ("--until", "99999999d"), ("--since", "9" * 400 + "d"), ("--since", "0001-01-01")])
def test_a_monitoring_window_before_1970_starts_no_run(toy, flag, value):
    settings, s = toy
    p = cli("monitor", flag, value, settings=settings)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert flag in lines[0] and repr(value) in lines[0] and "1970" in lines[0], lines[0]
    assert not s.runs.exists() or not [d for d in s.runs.iterdir() if d.is_dir()]     # no run folder was made
