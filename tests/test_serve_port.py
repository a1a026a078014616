"""`serve` on a port that is taken: one line and exit 4, which --help documents; never `serving ... on` (issue 23 item 15)."""
import socket
from conftest import cli, make_workbook


def test_a_taken_port_exits_4_without_saying_serving(tmp_path):
    wb = make_workbook(tmp_path)
    with socket.socket() as other:                      # another service on the port
        other.bind(("127.0.0.1", 0)); other.listen()
        port = other.getsockname()[1]
        p = cli("serve", "--port", str(port), settings=wb, timeout=60)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines() == [f"mlops-nb serve: error: cannot listen on 127.0.0.1:{port}: the port is taken "
                                             "(another service listens there; --port picks another)"], p.stderr
    assert "serving" not in p.stderr + p.stdout


def test_a_taken_grpc_port_exits_4_naming_it(tmp_path):
    wb = make_workbook(tmp_path)
    with socket.socket() as other, socket.socket() as free:
        other.bind(("127.0.0.1", 0)); other.listen()
        free.bind(("127.0.0.1", 0)); port = free.getsockname()[1]; free.close()
        g = other.getsockname()[1]
        p = cli("serve", "--port", str(port), "--grpc-port", str(g), settings=wb, timeout=60)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines() == [f"mlops-nb serve: error: cannot listen for gRPC on 127.0.0.1:{g}: the port is taken "
                                             "(another service listens there; --grpc-port picks another, --no-grpc serves HTTP only)"], p.stderr


def test_help_documents_the_exit_statuses_apart():
    from mlops_nb.cli.main import parser
    h = " ".join(parser().format_help().split())
    assert "3 W&B unreachable (sync); 4 the service cannot listen (serve: the port is taken)" in h
    serve = next(a for a in parser()._subparsers._group_actions[0].choices.items() if a[0] == "serve")[1]
    assert "Exit status 4 when it cannot listen" in " ".join(serve.format_help().split())


def test_serving_on_is_said_once_the_port_listens(tmp_path):
    "`serving ... on http://HOST:PORT` comes after the bind: with --port 0 it names the port it got, and that port answers."
    import os, re, signal, subprocess, time
    from conftest import BIN
    from toybundle import toy_bundle
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    wb = make_workbook(tmp_path)
    reg = registry_for(load_settings(wb))
    reg.register("toy-cnn", toy_bundle(reg.store, "port")); reg.close()
    env = {**os.environ, "MLOPS_NB_SETTINGS": str(wb), "WANDB_MODE": "disabled"}
    p = subprocess.Popen([str(BIN / "mlops-nb"), "serve", "--model", "toy-cnn@1", "--port", "0"], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline, line = time.time() + 60, ""
        while time.time() < deadline and "serving" not in line and p.poll() is None: line = p.stderr.readline()
        m = re.search(r"serving toy-cnn@1 \(sha256:\w+\) on http://127\.0\.0\.1:(\d+) ", line)
        assert m and int(m[1]) > 0, line
        with socket.create_connection(("127.0.0.1", int(m[1])), timeout=5): pass         # listening when it said so
    finally:
        os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=30)
