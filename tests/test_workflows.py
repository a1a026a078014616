"""CI/CD as code: every workflow passes actionlint (no runner executes them here), the commands they call exist, and
the job summary CI writes for a run (`mlops-nb show RUN --markdown`) carries its metrics and gate verdicts, escaped."""
import re, shlex, subprocess
from conftest import BIN, REPO, cli


def test_workflows_pass_actionlint():
    p = subprocess.run([str(BIN / "actionlint"), "-no-color"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert {"ci.yml", "release.yml"} <= {f.name for f in (REPO / ".github" / "workflows").glob("*.yml")}


def test_the_commands_the_workflows_call_exist():
    from mlops_nb.cli.main import parser
    sub = next(a for a in parser()._actions if a.dest == "cmd").choices
    calls = [l for f in (REPO / ".github" / "workflows").glob("*.yml") for l in f.read_text().splitlines() if "mlops-nb " in l
             and not l.lstrip().startswith("#")]
    assert len(calls) >= 4
    for line in calls:
        words = shlex.split(line.split("mlops-nb ", 1)[1].split("|")[0].split(">")[0])
        assert words[0] in sub, line
        for opt in (w for w in words if w.startswith("--")):                  # every option is one the command takes
            assert opt in sub[words[0]]._option_string_actions, (line, opt)


def test_the_job_summary_of_a_run(smoke):
    settings, _, rec = smoke
    p = cli("show", rec["run_id"], "--markdown", settings=settings)
    assert p.returncode == 0, p.stderr
    md = p.stdout
    assert md.startswith(f"### mlops-nb run `{rec['run_id']}`: succeeded")
    assert "| test/accuracy |" in md and "| apptest | succeeded |" in md
    assert re.search(r"\| application test \| yes \| application test passed: replay exact", md), md
    assert "| approval |" in md                                              # settings.ini requires it
    assert re.search(r"production gate does not pass yet \(not passed: [^)]*\bapproval\b[^)]*\)", md), md   # names what fails
    assert "<script" not in md
