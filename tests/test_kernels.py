"""A stage kernel that dies while it starts (a port it was given is taken meanwhile) is started again on fresh ports;
when every start fails, the error says the cause its log gives, not only 'Kernel died before replying'."""
import os, socket
import pytest
from mlops_nb.pipeline import kernels
from mlops_nb.pipeline.kernels import Kernel, KernelStartError


@pytest.fixture
def taken_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
    yield s.getsockname()[1]
    s.close()


def collide(monkeypatch, port, times):
    "The first `times` managers give the kernel a shell port another process holds (the race the issue saw)."
    made, real = [], kernels._async_client_manager
    def manager(*a, **kw):
        km = real(*a, **kw)
        if len(made) < times: km.ip, km.cache_ports, km.shell_port = "127.0.0.1", False, port
        made.append(km); return km
    monkeypatch.setattr(kernels, "_async_client_manager", manager)
    return made


def test_port_taken_once_is_retried(tmp_path, monkeypatch, taken_port):
    made = collide(monkeypatch, taken_port, 1)
    k = Kernel("python3", tmp_path, log=tmp_path / "kernels.log")
    try:
        km = k.ready(120)
        assert km.is_alive() and k.starts == 2 and len(made) == 2
        assert km.shell_port != taken_port
        assert "Address already in use" in (tmp_path / "kernels.log").read_text()   # the first start's cause, kept
    finally: k.shutdown(now=True)


def test_port_always_taken_names_the_cause(tmp_path, monkeypatch, taken_port):
    collide(monkeypatch, taken_port, 99)
    k = Kernel("python3", tmp_path, log=tmp_path / "kernels.log")
    try:
        with pytest.raises(KernelStartError, match="Address already in use") as e: k.ready(180)
        assert k.starts == Kernel.attempts and "3 times" in str(e.value) and "kernels.log" in str(e.value)
    finally: k.shutdown(now=True)


def test_the_connection_file_goes_with_the_run_temporary_files(tmp_path):
    "A stage kernel's connection file (its ports and key) is written in the run's TMPDIR, which is removed however the "
    "run ends (`reap` after a kill -9), not as /tmp/tmp*.json, where a kernel killed with its run left it."
    run_tmp = tmp_path / "run-tmp"; run_tmp.mkdir()
    k = Kernel("python3", tmp_path, env={**os.environ, "TMPDIR": str(run_tmp)}, log=tmp_path / "kernels.log")
    try:
        km = k.ready(120)
        assert km.is_alive() and km.connection_file.startswith(str(run_tmp) + "/"), km.connection_file
        assert [p.name for p in run_tmp.iterdir()] == [km.connection_file.rsplit("/", 1)[1]]
    finally: k.shutdown(now=True)
    assert list(run_tmp.iterdir()) == []                                       # removed at shutdown, as before
