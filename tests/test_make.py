"""The Makefile's install stamp: `make test` installs only when pyproject.toml's content changes."""
import os, shutil, subprocess, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(cwd, *args):
    return subprocess.run(["make", "-s", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def fake_repo(tmp_path):
    "A copy of the Makefile and pyproject.toml with a .venv whose python does nothing (it stands in for pip)."
    for f in ("Makefile", "pyproject.toml"): shutil.copy(REPO / f, tmp_path / f)
    py = tmp_path / ".venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\necho \"Successfully installed fake\"\n"); py.chmod(0o755)
    return tmp_path


def test_install_stamp_follows_content_not_mtime(tmp_path):
    repo = fake_repo(tmp_path)
    assert make(repo, "-q", "install").returncode == 1              # first use: nothing installed yet
    p = make(repo, "install")
    assert p.returncode == 0, p.stderr
    assert "Successfully installed" in p.stdout                      # pip's own lines reach the terminal
    assert make(repo, "-q", "install").returncode == 0              # installed
    later = time.time() + 100                                       # nbdev-export rewrites pyproject.toml: same bytes, new mtime
    os.utime(repo / "pyproject.toml", (later, later))
    assert make(repo, "-q", "install").returncode == 0, "a new mtime alone must not reinstall"
    with open(repo / "pyproject.toml", "a") as f: f.write("\n# changed\n")
    assert make(repo, "-q", "install").returncode == 1, "a changed pyproject.toml must reinstall"
    assert make(repo, "install").returncode == 0
    assert len(list((repo / ".venv").glob(".installed*"))) == 1      # the old stamp is gone


def test_failed_pip_fails_install(tmp_path):
    repo = fake_repo(tmp_path)
    (repo / ".venv" / "bin" / "python").write_text("#!/bin/sh\necho 'ERROR: no matching distribution'; exit 1\n")
    p = make(repo, "install")
    assert p.returncode != 0 and "ERROR: no matching distribution" in p.stdout + p.stderr
    assert not list((repo / ".venv").glob(".installed*"))
