"""W&B: a run set to online with no server logs offline (one warning, nothing lost); `mlops-nb sync`: the edges a dry run
would add, and a clean refusal when no W&B server is reachable."""
import pytest
from conftest import cli, make_workbook, run_record, variant_bundle


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandbwb")
    settings = make_workbook(root)
    # W&B set to online, and no server: the run falls back to offline with one warning, and loses nothing
    p = cli("run", "--profile", "smoke", settings=settings,
            env={"WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40})
    assert p.returncode == 0, p.stderr
    warned = [l for l in p.stderr.splitlines() if "W&B" in l]
    assert len(warned) == 1 and "http://127.0.0.1:9 is not reachable" in warned[0] and "offline" in warned[0], p.stderr
    rec = run_record(settings, p)
    assert "not reachable" in rec["wandb_fallback"] and {s["wandb"]["mode"] for s in rec["stages"]} == {"offline"}
    return root, settings, rec


def test_wandb_offline_run_written(offline):
    root, settings, rec = offline
    runs = sorted((root / "wandb_dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 6                                            # one W&B run per stage execution
    blob = b"".join(list(r.glob("*.wandb"))[0].read_bytes() for r in runs)
    assert rec["run_id"].encode() in blob                            # group = pipeline run id
    for stage in ("ingest", "train", "evaluate", "package", "register", "apptest"):
        assert stage.encode() in blob                                # job_type
    assert rec["stages"][0]["outputs"]["dataset"].encode() in blob   # input digests in config
    assert {s["wandb"]["id"] for s in rec["stages"]} == {r.name.rsplit("-", 1)[1] for r in runs}
    staged = [f for f in (root / "wandb_data_dir").rglob("*") if f.is_file()]
    assert staged                                                   # offline artifact files are staged for sync


def test_sync_dry_run_lists_the_edges(offline):
    root, settings, rec = offline
    p = cli("sync", rec["run_id"], "--dry-run", settings=settings)
    assert p.returncode == 0, p.stderr
    ds = rec["stages"][0]["outputs"]["dataset"].replace(":", "-")
    model = rec["stages"][1]["outputs"]["model"].replace(":", "-")
    assert p.stdout.count("wandb sync ") == 6
    assert f"mlops_nb/ingest-dataset:{ds}  (input dataset)" in p.stdout
    assert f"mlops_nb/train-model:{model}  (input model)" in p.stdout
    assert p.stdout.count("use_artifact") == 1 + 2 + 4 + 1 + 1      # train, evaluate, package, register, apptest inputs
    bundle = rec["stages"][3]["outputs"]["bundle"].replace(":", "-")
    assert f"link_artifact <entity>/mlops_nb/package-bundle:{bundle} -> <entity>/model-registry/digits-cnn alias staging" in p.stdout


def test_sync_without_server_changes_nothing(offline):
    root, settings, rec = offline
    before = (root / "runs" / rec["run_id"] / "run.json").read_text()
    p = cli("sync", settings=settings, env={"WANDB_MODE": "offline", "WANDB_BASE_URL": "http://127.0.0.1:9"})
    assert p.returncode == 3 and "not reachable" in p.stderr and "nothing was synced" in p.stderr
    assert (root / "runs" / rec["run_id"] / "run.json").read_text() == before


def test_link_plan_follows_the_alias_history(offline):
    "After promotions and rollbacks, replaying the plan leaves W&B's aliases where the local registry's are."
    root, settings, rec = offline
    from mlops_nb.core.config import load_settings
    from mlops_nb.build.registry import registry_for
    from mlops_nb.pipeline.sync import link_plan
    s = load_settings(settings)
    reg = registry_for(s)
    base = rec["stages"][3]["outputs"]["bundle"]
    for i in range(3):                                                   # v2..v4: real bundles of the same model
        v = reg.register("digits-cnn", variant_bundle(reg.store, base, f"sync{i}"), {"test/accuracy": 0.99, "test/recall_gap": 0.0})
        reg.record_apptest("digits-cnn", v, True)
        reg.promote("digits-cnn", v, "production", {"min_accuracy": 0, "max_recall_gap": 1, "significance": 0.05}, why="t", force=True)
    reg.rollback("digits-cnn"); reg.rollback("digits-cnn")               # production: v4 -> v3 -> v2
    reg.set_alias("digits-cnn", "staging", 3)
    plan = link_plan(s)
    hist = reg.history("digits-cnn")
    assert [(l["alias"], l["version"]) for l in plan] == [(h["alias"], h["to_version"]) for h in hist]   # history order
    replayed = {}
    for l in plan: replayed[l["alias"]] = l["version"]                   # what W&B ends with
    assert replayed == reg.aliases("digits-cnn") == {"production": 2, "staging": 3}
    p = cli("sync", "--dry-run", settings=settings)
    links = [l for l in p.stdout.splitlines() if l.startswith("link_artifact")]
    assert links[-2].endswith("alias production  (digits-cnn@2)") and links[-1].endswith("alias staging  (digits-cnn@3)")
    reg.mark_synced("digits-cnn", plan[-2]["history_id"])                 # a sync that stopped before the last move
    assert [(l["alias"], l["version"]) for l in link_plan(s)] == [("staging", 3)]
