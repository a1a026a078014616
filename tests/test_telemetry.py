"""The service's telemetry: its background gauge updates end when it is closed (the docs build ran the notebook's
example, dropped its namespace, and the still-running thread died on `NameError: name 'time' is not defined`)."""
import threading
from mlops_nb.deploy.telemetry import Telemetry


def test_close_stops_the_background_thread():
    before = {t for t in threading.enumerate() if t.name == "telemetry"}
    t = Telemetry(("toy", 1, "sha256:00"), ["a", "b"], every_s=0.01)
    mine = {x for x in threading.enumerate() if x.name == "telemetry"} - before
    assert len(mine) == 1 and mine.pop().is_alive()
    t.close()
    assert not t._thread.is_alive()
    assert "mlops_nb_process_resident_memory_bytes" in t.render()[0].decode()     # still renders on a scrape
