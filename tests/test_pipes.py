"""A reader that goes away early (`| head`) changes no command's exit status (issue 23 item 4)."""
import os, subprocess
from conftest import BIN


def piped(cmd: str, settings, n: int = 1) -> list:
    "PIPESTATUS of `mlops-nb CMD 2>&1 | head -N` under bash: [mlops-nb's, head's]."
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(settings), "WANDB_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    p = subprocess.run(["bash", "-c", f'mlops-nb {cmd} 2>&1 | head -{n} >/dev/null; echo "${{PIPESTATUS[@]}}"'],
                       capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    return p.stdout.split()


def test_a_failed_run_piped_into_head_exits_1(workbook, tmp_path):
    (tmp_path/"a").mkdir()
    (tmp_path/"a"/"x.png").write_text("not an image")                  # the ingest stage refuses it: the run fails
    assert piped(f"run --profile smoke -p source=imagefolder:{tmp_path}", workbook) == ["1", "0"]


def test_a_command_that_succeeds_piped_into_head_exits_0(workbook):
    assert piped("params", workbook) == ["0", "0"]
    assert piped("--help", workbook) == ["0", "0"]
    assert piped("run --help", workbook) == ["0", "0"]
