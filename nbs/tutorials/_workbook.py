"""The tutorials' scratch workbook: a settings file in a folder of its own (runs, store, registry, logs all inside it)
that uses this checkout's stage notebooks, `mlops-nb` run in it, and a service started from it. Each tutorial's "Try
it" cells use one, so the pages run anywhere (`nbdev-test` executes them) and never touch your own runs."""
import os, shutil, subprocess, sys, tempfile, weakref
from contextlib import contextmanager
from pathlib import Path
from mlops_nb.core.client import Client
from mlops_nb.core.config import find_settings, scratch_settings
from mlops_nb.deploy.apptest import serving


def _sweep():
    "Remove the scratch folders of tutorials whose process is gone (a pool worker leaves without running exit handlers)."
    for d in Path(tempfile.gettempdir()).glob("mlops-nb-tutorial-*-*"):
        try: pid = int(d.name.split("-")[3])
        except (IndexError, ValueError): continue
        try: os.kill(pid, 0)
        except ProcessLookupError: shutil.rmtree(d, ignore_errors=True)
        except PermissionError: pass                     # another user's process: alive


class Workbook:
    "A scratch workbook in a new temporary folder (removed when the workbook is collected or the kernel exits, else by the "
    "next workbook once its process is gone); calling it "
    "runs `mlops-nb ARGS` there, shows the output, checks the exit status."
    def __init__(self):
        _sweep()
        self.root = Path(tempfile.mkdtemp(prefix=f"mlops-nb-tutorial-{os.getpid()}-"))
        self.close = weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)   # call it to remove the folder now
        self.settings = scratch_settings(self.root, find_settings())
        self.env = {**os.environ, "MLOPS_NB_SETTINGS": str(self.settings), "WANDB_MODE": "disabled"}
        self.exe = str(Path(sys.executable).parent / "mlops-nb")

    def __call__(self, *args, ok: int = 0, show: int = 40) -> str:
        "Run `mlops-nb ARGS`: print the command and (at most `show` lines of) what it printed, stdout then stderr; that text."
        p = subprocess.run([self.exe, *map(str, args)], env=self.env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        text = (p.stdout + p.stderr).lstrip("\n").rstrip()
        lines = text.splitlines()
        print("$ mlops-nb " + " ".join(map(str, args)), *lines[:show], *(["..."] if len(lines) > show else []), sep="\n")
        assert p.returncode == ok, f"exit status {p.returncode}, expected {ok}"
        return text

    @contextmanager
    def serve(self, *args):
        "`mlops-nb serve ARGS` on a free port for the block (`mlops_nb.deploy.apptest.serving`); yields a `Client` for it."
        with serving(self.env, ["--no-grpc", *args], self.root/"service.log") as url, Client(url, timeout=5) as cl:
            print(f"serving on {url}")
            yield cl
