"""`mlops-nb lineage RUN` shows each execution's ancestry once, not once per final output (issue 23 item 15)."""
from conftest import cli, make_workbook
from mlops_nb.core.config import load_settings
from mlops_nb.core.lineage import Lineage

RUN = "20260101-000000-aaaa"
D = lambda c: "sha256:" + c * 64


def test_lineage_of_a_run_shows_the_dataset_once(tmp_path):
    wb = make_workbook(tmp_path)
    lin = Lineage(load_settings(wb).lineage)
    lin.record_run({"run_id": RUN, "status": "succeeded", "params": {}, "git": {"commit": "abc", "dirty": False}})
    ex = lambda stage, ins, outs, k: lin.record_execution(RUN, stage, "succeeded", ins, outs, params={"source": "digits"} if
                                                           stage == "ingest" else {}, git_commit="abc", cache_key=k)
    ex("ingest", {}, {"dataset": D("1")}, "k1")
    ex("train", {"dataset": D("1")}, {"model": D("2")}, "k2")
    for i, st in enumerate(["evaluate", "package", "apptest", "register", "monitor"]):      # five final outputs of one model
        ex(st, {"model": D("2"), "dataset": D("1")}, {"out": D(str(3 + i))}, f"k{3 + i}")
    p = cli("lineage", RUN, settings=wb)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("raw data: digits") == 1 and p.stdout.count(f"<- ingest in run {RUN}  commit") == 1, p.stdout
    assert p.stdout.count("(its ancestry is shown above)") == 4 + 5, p.stdout    # the model in 4 trees, the dataset in all 5
