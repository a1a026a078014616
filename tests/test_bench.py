"""bench/table.py builds BENCHMARKS.md's table from the scripts' JSON (hand-made here: the real benches are too slow for
`make test`; tests/test_serve.py and tests/test_drift.py smoke two of them), and every bench script takes --json and --quick."""
import importlib.util, json, re, subprocess, sys
from pathlib import Path
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
TABLE = BENCH / "table.py"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.name != "table.py")

FIGURES = {
    "archive": {"quick": False, "rows": 10000000, "frames": 2000, "log": {"rows": 10000000, "labelled": 500000, "log_mb": 6964.9, "seconds": 297.1},
                "roll": {"rows": 10500000, "segments": 389, "rows_per_s": 120000, "seconds": 87.5, "bytes_a_prediction": 438.5},
                "monitor": [{"engine": e, "rows": n, "labelled": n // 20, "rows_per_s": r, "seconds": n / r, "peak_mb": 254.0 + m,
                             "base_mb": 254.0, "memory_mb": 256} for e, n, r, m in (("sqlite", 2500000, 100000, 137.0), ("duckdb", 2500000, 200000, 214.0),
                                                                                     ("sqlite", 10000000, 100000, 137.0), ("duckdb", 10000000, 300000, 225.0))],
                "speedup": 3.0, "lake": {"frames": 2000, "s3_raw_fetch_per_s": 269, "local_first_per_s": 2709, "local_again_per_s": 70573,
                                         "s3_first_per_s": 134, "s3_again_per_s": 2516, "same_dataset": True}},
    "fleet": {"quick": False, "rows": 20000, "window": 10000, "memory_mb": 64,
              "bytes": [{"input": "3x64x64", "policy": p, "rows": 20000, "raw_kept": k, "bytes": b, "rows_per_s": 900}
                        for p, k, b in (("auto", 100, 950.0), ("none", 0, 880.0), ("all", 20000, 13780.0))]
                       + [{"input": "3x224x224", "policy": "auto", "rows": 5000, "raw_kept": 2, "bytes": 940.0, "rows_per_s": 500}],
              "monitor": [{"rows": 10000, "rows_per_s": 9000, "peak_mb": 400.0, "base_mb": 390.0, "log_mb": 9.0, "memory_mb": 64},
                          {"rows": 40000, "rows_per_s": 9500, "peak_mb": 410.0, "base_mb": 390.0, "log_mb": 36.0, "memory_mb": 64}],
              "verdicts": {"rows": 4000, "same_all_auto": True, "checks_all": {"input drift": "ALERT"}, "checks_auto": {"input drift": "ALERT"},
                           "checks_raw": {"input drift": "ALERT"}, "max_stat_diff_raw": 0.0, "drifted_share": {}}},
    "pipeline_overhead": {"profile": "default", "repeat": 3, "wandb": "disabled", "quick": False, "stages": 6,
                          "mlops_nb_s": 31.6, "cold_kernels_s": 37.92, "plain_s": 23.4, "ratio": 31.6 / 23.4, "goal": 1.3},
    "cached_rerun": {"profile": "default", "repeat": 5, "quick": False, "cold_s": 31.0, "cached_median_s": 0.5,
                     "cached_min_s": 0.48, "cached_max_s": 0.55, "goal_s": 1.0},
    "concurrent_runs": {"profile": "default", "repeat": 2, "quick": False, "cores": 2, "alone_wall_s": 25.0, "alone_train_s": 10.0,
                        "two_wall_s": 49.1, "two_train_s": 21.0, "slowdown_wall": 49.1 / 25.0, "slowdown_train": 2.1},
    "onnx_latency": {"model": "digits-cnn@3", "threads": 2, "repeat": 5, "quick": False, "budget_s": 3.0,
                     "batches": [{"batch": 1, "torch_ms": 0.2, "ort_ms": 0.05, "ort_speedup": 4.0},
                                 {"batch": 32, "torch_ms": 1.0, "ort_ms": 0.5, "ort_speedup": 2.0},
                                 {"batch": 512, "torch_ms": 9.0, "ort_ms": 6.0, "ort_speedup": 1.5}]},
    "serve": {"model": "digits-cnn@3", "repeat": 3, "seconds": 5, "connections": 4, "quick": False, "mlflow_python": "/tmp/mlv/bin/python",
              "floor_rps": 29373.0, "floor_p50": 0.10, "floor_p99": 0.36, "predict_rps": 6268.0, "predict_p50": 0.58, "predict_p99": 2.03,
              "infer_rps": 6098.0, "infer_p50": 0.60, "infer_p99": 1.95, "batch512_rps": 165.0, "batch512_p50": 5.48, "batch512_p99": 11.95,
              "mlflow_rps": 998.0, "mlflow_p50": 3.65, "mlflow_p99": 46.56, "bare1_rows_s": 20000.0, "bare512_rows_s": 160000.0,
              "start_s": 0.6, "batch512_rows_s": 165.0 * 512},
    "crash_loss": {"model": "digits-cnn@3", "repeat": 5, "seconds": 3, "clients": 3, "quick": False, "flush_ms": 5, "acked": 4916,
                   "lost": 2, "lost_share": 2 / 4916, "rps": 1639.0, "max_lost_age_ms": 0.08, "worst_lost_age_ms": 8.45,
                   "integrity_ok": 5, "beyond_bound": 0},
    "release": {"model": "digits-cnn (v1 and v2: one network, two bundles)", "swaps": 6, "swap_seconds_mean_service": 0.0123,
                "release_to_first_answer_s": {"median": 0.31, "max": 0.52}, "requests_during_swaps": 40000, "failed_during_swaps": 0,
                "plain": {"rps": 6000.0, "p50": 0.6, "p99": 2.0}, "shadow": {"rps": 5400.0, "p50": 0.7, "p99": 2.34},
                "plain_paced": {"rps": 3000.0, "p50": 0.5, "p99": 1.0}, "shadow_paced": {"rps": 2900.0, "p50": 0.5, "p99": 1.05},
                "shadow_dropped_share": {"shadow": 0.25, "shadow_paced": 0.0},
                "apptest_load": {"requests": 9000, "errors": 0, "rps": 1800.0, "p50_ms": 1.5, "p95_ms": 3.0, "p99_ms": 5.0,
                                 "concurrency": 4, "seconds": 5.0},
                "repeat": 3, "seconds": 5, "quick": False, "apptest_p99_limit_ms": 50, "follow_ms": 500},
    "soak": {"model": "digits-cnn (v1, v2, v3: one network, three bundles)", "seconds": 600, "connections": 4, "quick": False,
             "requests": 3000000, "failed": 0, "rps": 5000.0, "p50": 0.6, "p99": 2.5, "rss_warm_mb": 130.0, "rss_end_mb": 136.5,
             "rss_max_mb": 137.0, "rss_growth": 0.05, "warm_up_s": 60.0, "answered": 3000004, "logged": 3000004, "integrity": "ok",
             "moves": [[150.0, "release", 2], [300.0, "release", 3], [450.0, "rollback", 2]], "swaps": 3, "production_at_end": 2,
             "served_at_end": [2], "rss_series_mb": [130.0, 136.5]},
    "client": {"seconds": 3.0, "concurrency": 4, "repeat": 3, "quick": False,
               "clients": {"core": {"what": "mlops_nb.core.client.Client", "rps": 7000.0, "cpu_us": 110.0, "errors": 0},
                           "httpclient": {"what": "http.client, a connection a thread (before)", "rps": 7500.0, "cpu_us": 105.0, "errors": 0},
                           "httpcore": {"what": "httpcore's pool (httpx's transport)", "rps": 2500.0, "cpu_us": 380.0, "errors": 0},
                           "httpx": {"what": "httpx.Client", "rps": 1300.0, "cpu_us": 750.0, "errors": 0}}},
    "log_ids": {"rows": 500000, "chunk": 5000, "repeat": 3, "quick": False, "ordered_first_ms": 40.0, "ordered_last_ms": 35.0,
                "random_first_ms": 45.0, "random_last_ms": 140.0, "ordered_mb": 200.0, "random_mb": 201.0, "ratio_last": 4.0},
    "drift": {"rows": 1000000, "features": 64, "ref_rows": 5000, "chunk": 50000, "repeat": 3, "quick": False, "evidently_python": None,
              "ours_250000_seconds": 1.0, "ours_250000_peak_mb": 300.0, "ours_250000_base_mb": 280.0,
              "ours_1000000_seconds": 4.0, "ours_1000000_peak_mb": 301.0, "ours_1000000_base_mb": 280.0},
    "monitor": {"model": "digits-cnn@3", "rows": 1000000, "repeat": 3, "quick": False, "write_s": 200.0, "log_mb": 900.0, "cli_s": 60.0,
                "library": {"quarter": {"rows": 250000, "seconds": 10.0, "peak_mb": 400.0},
                            "day": {"rows": 1000000, "seconds": 40.0, "peak_mb": 410.0}},
                "estimate": [{"drift": "class-shift", "severity": 1.0, "error": -0.01}, {"drift": "noise", "severity": 0.0, "error": 0.02},
                             {"drift": "noise", "severity": 1.0, "error": -0.30}, {"drift": "blur", "severity": 0.0, "error": 0.03}]},
    "scale": {"quick": False, "repeat": 3, "sizes": [3000, 100000], "px": [128], "sizes_arg": "3000,100000", "px_arg": "128",
              "acc_sizes_arg": "3000", "acc_px": 96, "acc_epochs": 5, "score_n": 10000, "skipped": [], "cores": 2, "load_before": 0.1,
              "aims": {"peak_mb": 1536.0, "ingest_images_s": 300.0, "reingest_ratio": 0.05, "predict_share": 0.7},
              "ingest": [{"n": 3000, "px": 128, "seconds": 6.0, "images_s": 500.0, "peak_mb": 300.0, "changed": 30, "reingest_s": 0.12,
                          "reingest_ratio": 0.02, "reingest_decoded": 30, "reingest_peak_mb": 150.0},
                         {"n": 100000, "px": 128, "seconds": 210.0, "images_s": 476.0, "peak_mb": 330.0, "changed": 1000, "reingest_s": 6.3,
                          "reingest_ratio": 0.03, "reingest_decoded": 1000, "reingest_peak_mb": 200.0,
                          "reingest_stats": {"files": 100000, "decoded": 1000, "shards_written": 75, "shards_reused": 0}}],
              "growth": [{"px": 128, "from": 3000, "to": 100000, "images": 100000 / 3000, "time": 35.0, "memory": 1.1}],
              "train": {"arch": "mobilenet_v3_small", "epochs": 1, "seconds": 800.0, "images_s": 100.0, "peak_mb": 900.0,
                        "train_images": 80000, "device": "Test CPU 3000", "n": 100000, "px": 128},
              "accuracy": [{"arch": "convnet", "n": 3000, "px": 96, "epochs": 5, "test_acc": 0.8, "val_acc": 0.8, "seconds": 20.0},
                           {"arch": "resnet18", "n": 3000, "px": 96, "epochs": 5, "test_acc": 0.9, "val_acc": 0.9, "seconds": 200.0}],
              "scoring": {"arch": "mobilenet_v3_small", "px": 128, "images": 10000, "rows_written": 10000, "batch": 256, "bare_s": 8.0,
                          "decode_s": 2.0, "library_s": 10.0, "cli_s": 12.5, "bare_images_s": 1250.0, "cli_images_s": 800.0,
                          "library_share": 0.8, "cli_share": 0.64, "peak_mb": 400.0}},
    "peers": {"repeat": 3, "seconds": 5, "models_arg": "digits,cam224", "before": "/tmp/old/bin/python", "connections": 4, "quick": False,
              "peers": {"before": "/tmp/old/bin/python", "kserve": "kserve==0.21.0", "ray": "ray[serve]==2.60.0"}, "missing": ["bentoml"],
              "models": {
                  "digits": {"shape": [1, 8, 8], "bare": {"1": 50000.0, "32": 150000.0},
                             "ours": {"start_s": 0.8, "json": {"rps": 5000.0, "p50": 0.8, "p99": 1.6, "cpu_us": 200.0},
                                      "grpc": {"rps": 2000.0, "p50": 1.9, "p99": 4.0, "cpu_us": 300.0}},
                             "before": {"start_s": 0.7, "json": {"rps": 4000.0, "p50": 0.9, "p99": 1.8, "cpu_us": 250.0}},
                             "kserve": {"start_s": 1.0, "json": {"rps": 1600.0, "p50": 2.4, "p99": 3.5, "cpu_us": 900.0},
                                        "grpc": {"rps": 2500.0, "p50": 1.5, "p99": 2.4, "cpu_us": 350.0}},
                             "ray": {"start_s": 6.0, "json": "failed: wrk saw errors"}},
                  "cam224": {"shape": [3, 224, 224], "bare": {"1": 500.0, "16": 400.0},
                             "ours": {"start_s": 0.9, "c16": {"rps": 350.0, "p50": 40.0, "p99": 70.0, "cpu_us": 3900.0},
                                      "c16_binary": {"rps": 400.0, "p50": 38.0, "p99": 60.0, "cpu_us": 3500.0, "batch_rows": 10.0,
                                                     "batch_ms": 24.0},
                                      "jpeg": {"rps": 300.0, "p50": 12.0, "p99": 21.0, "cpu_us": 4500.0}},
                             "kserve": {"start_s": 1.0, "c16": {"rps": 390.0, "p50": 39.0, "p99": 45.0, "cpu_us": 2700.0}}}}},
    "detect": {"quick": False, "trials": 100, "sizes": [10, 1000], "sizes_arg": "10,1000", "px": 32, "severities": {"medium": 0.3},
               "live": [{"rate": 100, "shift": "blur", "severity": 0.3, "share": 0.5, "clean_hours": 12, "clean_alerts": 0,
                         "hours_to_alert": 0.83, "predictions_to_alert": 142},
                        {"rate": 100, "shift": "noise", "severity": 0.3, "share": 0.5, "clean_hours": 12, "clean_alerts": 1,
                         "hours_to_alert": None, "predictions_to_alert": None}],
               "families": {"frames": {"held_rows": 20000, "needed": {"clean": None, "noise medium": 1000, "blur medium": None},
                                       "hours": {"noise": {"10": 14, "1000": 1}, "blur": {"10": None, "1000": 2}},
                                       "estimate": {"n": 1000, "trials": 20, "windows": 440, "reliable": 200, "cbpe_median": 0.02,
                                                    "cbpe_max": 0.7, "reliable_median": 0.004, "reliable_max": 0.12, "cbpe_off": 160,
                                                    "cbpe_off_unreliable": 160, "reliable_off": 3, "pools": {}},
                                       "table": [{"pool": p, "n": n, "trials": 100, "rates": {"overall": r, "before": b}}
                                                 for p, n, r, b in (("clean", 10, 0.01, 1.0), ("clean", 1000, 0.03, 0.0),
                                                                    ("noise medium", 10, 0.2, 1.0), ("noise medium", 1000, 0.95, 1.0),
                                                                    ("blur medium", 10, 0.0, 1.0), ("blur medium", 1000, 0.4, 0.0))]}}},
    "gpu": {"quick": False, "frames": 512, "px": 128, "batch": 64, "steps": 30, "cpu_steps": 5, "repeat": 3, "arch": "resnet18",
            "cpu_threads": 2, "cpu_name": "Test CPU 3000", "cpu_images_s": 20.0,
            "gpu": {"name": "NVIDIA H100", "cuda": "12.8", "images_s": {"32": 2000.0, "bf16-mixed": 4000.0, "16-mixed": 3900.0}}},
}


def table(tmp_path, figures, meta=None, *args):
    "Write the JSON files, run table.py --from-json on them: (process, {figure: (value, compared with, ratio, command)}, text)."
    d = tmp_path / "json"; d.mkdir(exist_ok=True)
    for name, f in figures.items(): (d / f"{name}.json").write_text(json.dumps(f))
    if meta is not None: (d / "_run.json").write_text(json.dumps(meta))
    out = tmp_path / "BENCHMARKS.md"
    p = subprocess.run([sys.executable, str(TABLE), "--from-json", str(d), "--out", str(out), *args], capture_output=True, text=True,
                       timeout=60)
    text = out.read_text()
    lines = text.splitlines()
    head = lines.index("| figure | value | compared with | ratio | command |")
    assert lines[head + 1] == "|---|---|---|---|---|"
    rows = {}
    for line in lines[head + 2:]:
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]   # as markdown splits a row
        assert len(cells) == 5, line
        assert cells[0] not in rows, f"two rows named {cells[0]}"
        rows[cells[0]] = tuple(cells[1:])
    return p, rows, text


def row(rows, start):
    hits = [k for k in rows if k.startswith(start)]
    assert len(hits) == 1, (start, hits, list(rows))
    return rows[hits[0]]


MACHINE = {"cpu": "Test CPU 3000", "cores": 2, "usable_cores": 2, "memory_gib": 7.8, "os": "Debian GNU/Linux 13, Linux 6.1",
           "python": "3.13.1", "packages": {"torch": "2.13.0", "onnxruntime": "1.24.0", "uvicorn": "0.40.0", "numpy": "2.4.0"},
           "commit": "abc1234", "date": "2026-11-25 10:00 UTC"}


def test_every_row_from_the_figures(tmp_path):
    p, rows, text = table(tmp_path, FIGURES, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    assert p.returncode == 0, p.stderr + p.stdout
    assert "generated by `make bench`" in text.lower() and "do not edit by hand" in text and "2026-11-25 10:00 UTC" in text
    assert "Test CPU 3000, 2 cores, 7.8 GiB memory, Debian GNU/Linux 13" in text and "torch 2.13.0, onnxruntime 1.24.0" in text
    assert "uvicorn 0.40.0, numpy 2.4.0" in text and "Python 3.13.1" in text and "QUICK" not in text

    v, c, r, cmd = row(rows, "HTTP client as a load generator (apptest, simulate): mlops_nb.core.client, 4 threads, one-row JSON, against httpx.Client")
    assert (v, c, r) == ("7,000 req/s, 110 µs of client CPU a request", "1,300 req/s, 750 µs of client CPU a request", "5.38x the req/s")
    assert cmd == "`python bench/client.py --seconds 3 --concurrency 4 --repeat 3`"
    assert row(rows, "HTTP client as a load generator (apptest, simulate): mlops_nb.core.client, 4 threads, one-row JSON, against http.client")[2] == "0.93x the req/s"
    v, c, r, cmd = row(rows, "pipeline overhead")
    assert (v, r, cmd) == ("31.60 s", "1.35x (goal ≤ 1.3x)", "`python bench/pipeline_overhead.py --profile default --repeat 3`")
    assert "plain Python process: 23.40 s" in c
    assert row(rows, "forked kernels") == ("31.60 s", "every kernel started cold, `[run] fork_kernels = false`: 37.92 s",
                                                             "1.20x faster", "`python bench/pipeline_overhead.py --profile default --repeat 3`")
    assert row(rows, "cached re-run") == ("0.50 s", "the 1 s aim (cold run 31.00 s)", "0.50x of the aim",
                                         "`python bench/cached_rerun.py --profile default --repeat 5`")
    v, c, r, cmd = row(rows, "concurrent runs")
    assert v == "49.10 s (train stage 21.00 s)" and c == "one run alone: 25.00 s (train stage 10.00 s)"
    assert r.startswith("1.96x (train 2.10x") and cmd == "`python bench/concurrent_runs.py --profile default --repeat 2`"
    for b, ort, torch_, x in ((1, "0.05 ms", "0.20 ms", "4.0x"), (32, "0.50 ms", "1.00 ms", "2.0x"), (512, "6.00 ms", "9.00 ms", "1.5x")):
        assert row(rows, f"ONNX Runtime latency, batch {b} ") == (ort, f"torch eager: {torch_}", f"{x} faster", "`python bench/onnx_latency.py --repeat 5`")

    serve = "`python bench/serve.py --repeat 3 --seconds 5 --connections 4 --mlflow-python /tmp/mlv/bin/python`"
    floor = "GET /healthz (the HTTP floor, same server): 29,373 req/s, p99 0.36 ms"
    assert row(rows, "POST /v1/predict, one row: throughput") == ("6,268 req/s (p50 0.58 ms)", floor, "21% of the floor", serve)
    assert row(rows, "POST /v1/predict, one row: p99") == ("2.03 ms", floor, "5.64x the floor's p99", serve)
    assert row(rows, "POST OIP /v2/models/NAME/infer, one row: throughput") == ("6,098 req/s (p50 0.60 ms)", floor, "21% of the floor", serve)
    assert row(rows, "POST OIP /v2/models/NAME/infer, one row: p99") == ("1.95 ms", floor, "5.42x the floor's p99", serve)
    assert row(rows, "bare `session.run`, batch 512") == ("160,000 rows/s", "bare `session.run`, batch 1: 20,000 rows/s", "8.0x", serve)
    assert row(rows, "POST /v1/predict, 512 rows") == ("84,480 rows/s (165 req/s, p99 11.95 ms)",
                                                      "bare `session.run` at batch 512: 160,000 rows/s", "53% of bare", serve)
    assert row(rows, "POST /v1/predict, one row, against MLflow") == (
        "6,268 req/s, p99 2.03 ms", "`mlflow models serve`, same ONNX model: 998 req/s, p99 46.56 ms", "6.3x the req/s", serve)
    assert row(rows, "`mlops-nb serve`: process start to ready")[:3] == ("0.60 s", "—", "—")

    rel = "`python bench/release.py --repeat 3 --seconds 5 --swaps 6`"
    assert row(rows, "swap time") == ("12.30 ms", "—", "—", rel)
    assert row(rows, "release to first answer") == ("0.31 s median, 0.52 s max", "the service's poll, [serve] follow_ms: 500 ms", "—", rel)
    assert row(rows, "requests failed during the swaps") == ("0 of 40,000", "must be 0", "0%", rel)
    assert row(rows, "shadow cost, saturated") == ("2.34 ms (5,400 req/s; the shadow dropped 25% of requests)",
                                                  "without a shadow: 2.00 ms (6,000 req/s)", "1.17x the p99", rel)
    assert row(rows, "shadow cost, paced") == ("1.05 ms (2,900 req/s; the shadow dropped 0% of requests)",
                                              "without a shadow: 1.00 ms (3,000 req/s)", "1.05x the p99", rel)
    assert row(rows, "load test") == ("5.00 ms (1,800 req/s, p50 1.50 ms, 0 errors)", "[apptest] p99_ms limit: 50.00 ms", "10% of the limit", rel)

    soak, what = "`python bench/soak.py --seconds 600 --connections 4`", "soak: 600 s of /v1/predict (wrk -c4, one worker, logging on), two releases and a rollback during it"
    assert row(rows, f"{what}: failed requests") == ("0 of 3,000,000", "must be 0", "0%", soak)
    assert row(rows, f"{what}: resident memory") == ("130.0 MB -> 136.5 MB (+5.0%; max 137.0 MB)", "growth under 10%", "50% of the limit", soak)
    assert row(rows, f"{what}: rows in the prediction log") == ("3,000,004", "requests the service answered: 3,000,004", "1.0000x", soak)
    assert row(rows, "prediction log: a commit of 5,000 rows once the log holds 500,000, the service's request ids") == (
        "35.00 ms (at the start: 40.00 ms)", "random ids (uuid4-like): 140.00 ms (at the start: 45.00 ms)", "4.00x faster",
        "`python bench/log_ids.py --rows 500000 --chunk 5000 --repeat 3`")
    drift = "`python bench/drift.py --rows 1000000 --features 64 --repeat 3`"
    assert row(rows, "drift over 1,000,000 rows x 64 features (KS+PSI+BH, chunked): time") == (
        "4.00 s", "Evidently: not measured (pass --evidently-python)", "—", drift)
    assert row(rows, "drift over 1,000,000 rows x 64 features (KS+PSI+BH, chunked): peak memory") == (
        "301 MB (300 MB at 250,000 rows)", "Evidently: not measured (pass --evidently-python)", "—", drift)

    mon = "`python bench/monitor.py --rows 1000000 --repeat 3`"
    assert row(rows, "monitor: `mlops-nb monitor --every 1d`") == ("60.00 s", "`monitor()` + `evaluate()` alone over the day: 40.00 s",
                                                                  "1.50x the library's time", mon)
    assert row(rows, "monitor: `monitor()` + `evaluate()` throughput") == ("25,000 rows/s", "over a quarter of the day (250,000 rows): 25,000 rows/s",
                                                                          "1.00x", mon)
    assert row(rows, "monitor: peak memory") == ("410 MB", "over a quarter of the day: 400 MB", "1.02x (flat is 1.00x)", mon)
    v, c, r, cmd = row(rows, "label-free accuracy estimate (CBPE): median |error| without input drift")
    assert (v, r, cmd) == ("0.020", "—", mon)                  # median of 0.01, 0.02, 0.03: severity 0 or class-shift
    assert c == "all simulated drifts and severities: median 0.025, max 0.300"
    assert not any(v.startswith("failed") or v == "not run" for v, *_ in rows.values())
    order = [next(i for i, k in enumerate(rows) if k.startswith(s)) for s in
             ("pipeline overhead", "cached re-run", "concurrent runs", "ONNX Runtime", "POST /v1/predict", "swap time", "drift over",
              "monitor:", "label-free", "load test", "soak")]
    assert order == sorted(order) and list(rows)[-1].startswith("soak")      # the order; load test and soak last


def test_evidently_measured_and_a_quick_run(tmp_path):
    d = {**FIGURES["drift"], "evidently_python": "/tmp/ev/bin/python", "evidently_1000000_seconds": 40.0, "evidently_1000000_peak_mb": 6020.0,
         "evidently_250000_seconds": 10.0, "evidently_250000_peak_mb": 1800.0}
    p, rows, _ = table(tmp_path, {"drift": d}, {"machine": MACHINE, "notes": [], "failed": {}})
    cmd = "`python bench/drift.py --rows 1000000 --features 64 --repeat 3 --evidently-python /tmp/ev/bin/python`"
    assert row(rows, "drift over 1,000,000 rows x 64 features (KS+PSI+BH, chunked): time") == (
        "4.00 s", "Evidently DataDriftPreset(method='ks'): 40.00 s", "10.0x faster", cmd)
    assert row(rows, "drift over 1,000,000 rows x 64 features (KS+PSI+BH, chunked): peak memory")[1:3] == ("Evidently: 6,020 MB", "20.0x less")
    assert p.returncode == 1 and row(rows, "pipeline overhead")[0] == "not run"         # the other scripts gave no figures

    quick = {n: {**f, "quick": True, "profile": "smoke"} if "profile" in f else {**f, "quick": True} for n, f in FIGURES.items()}
    p, rows, text = table(tmp_path, quick, {"machine": MACHINE, "quick": True, "notes": ["a scratch workbook"], "failed": {}})
    assert p.returncode == 0, p.stderr
    assert "WARNING: QUICK FIGURES" in text and "NOT measurements" in text and "**Note:** a scratch workbook" in text
    assert row(rows, "pipeline overhead")[3] == "`python bench/pipeline_overhead.py --quick`"
    assert row(rows, "swap time")[3] == "`python bench/release.py --quick`"
    assert row(rows, "POST /v1/predict, one row: p99")[3] == "`python bench/serve.py --quick --mlflow-python /tmp/mlv/bin/python`"


def test_a_failed_script_shows_as_failed(tmp_path):
    figures = {k: v for k, v in FIGURES.items() if k != "release"}
    meta = {"machine": MACHINE, "quick": False, "notes": [], "failed": {"release": "SystemExit: v2 never answered after the release"},
            "commands": {n: f"python bench/{n}.py" for n in FIGURES}}
    p, rows, _ = table(tmp_path, figures, meta)
    assert p.returncode == 1 and "1 benchmark script(s) failed" in p.stderr
    failed = [(k, v) for k, v in rows.items() if v[0].startswith("failed")]
    assert failed == [("swap time, failed during swaps, shadow cost, load test",
                       ("failed: SystemExit: v2 never answered after the release", "—", "—", "`python bench/release.py`"))]
    assert row(rows, "pipeline overhead")[0] == "31.60 s"                                  # the others are still there


def test_detection_rows(tmp_path):
    p, rows, text = table(tmp_path, {"detect": FIGURES["detect"]})              # the other scripts' figures are absent: failed
    fa = row(rows, "detection, frames: false alarms of the monitor's drift verdict on clean windows (10, 1,000 predictions, 100 windows each)")
    assert fa[:3] == ("at most 3% (at 1,000)", "the rule before (effect sizes, no test): 100% at 10, 0% at 1,000; the aim: 5%", "aim met"), fa
    pw = row(rows, "detection, frames: medium shifts caught with power 0.9 at 1,000 predictions")
    assert pw[:3] == ("1 of 2; missed: blur 0.40", "predictions each needs: noise 1,000, blur >1,000", "aim MISSED"), pw
    assert pw[3] == "`python bench/detect.py --trials 100 --sizes 10,1000 --px 32`"
    hr = row(rows, "detection, frames: time to the first alert of `monitor --every 1h` after a medium shift starts, at 1,000 predictions an hour")
    assert (hr[0], hr[2]) == ("noise 1 h, blur 2 h", "1 of 2 in the first hour"), hr
    est = row(rows, "label-free accuracy, frames: the reweighted estimate on the windows it calls reliable (200 of 440 windows of 1,000")
    assert est[0] == "median |error| 0.004, max 0.120" and est[2] == "aims MISSED", est
    lv = row(rows, "time to detect end to end: `serve`, `simulate` 100 predictions an hour for a day and, from noon, 50% more")
    assert lv[:3] == ("blur 0.83 h (142 predictions), noise not in 12 h", "clean hours that alerted before noon: 1 of 24", "1 of 2 shifts caught"), lv
    off = row(rows, "label-free accuracy, frames: windows where CBPE is off by more than 0.10 that the verdict calls unreliable")
    assert off[:3] == ("160 of 160", "reliable windows off by more than 0.10: 3", "aim MISSED"), off


def test_every_script_has_rows():
    spec = importlib.util.spec_from_file_location("bench_table", TABLE)
    t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)
    assert sorted(t.SPECS) == SCRIPTS == sorted(FIGURES)


def test_every_bench_script_takes_json_and_quick():
    ps = {n: subprocess.Popen([sys.executable, str(BENCH / f"{n}.py"), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for n in [*SCRIPTS, "table"]}
    for n, p in ps.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (n, err)
        if n != "table": assert "--json" in out and "--quick" in out, n
        else: assert all(f in out for f in ("--quick", "--only", "--from-json", "--save-json")), out


def test_peers_rows(tmp_path):
    p, rows, _ = table(tmp_path, {"peers": FIGURES["peers"]}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    cmd = "`python bench/peers.py --models digits,cam224 --repeat 3 --seconds 5 --connections 4 --before /tmp/old/bin/python`"
    assert row(rows, "peers, digits (1x8x8): own JSON, one row") == (
        "5,000 req/s (p99 1.60 ms)", "KServe 1,600 req/s (p99 3.50 ms); Ray Serve failed", "3.12x the best peer", cmd)
    assert row(rows, "peers, digits (1x8x8): OIP gRPC")[:3] == ("2,000 req/s (p99 4.00 ms)", "KServe 2,500 req/s (p99 2.40 ms)",
                                                                "0.80x the best peer")
    assert row(rows, "peers, digits (1x8x8): against the build before, own JSON")[1:3] == (
        "/tmp/old/bin/python: 4,000 req/s (p99 1.80 ms); 250 µs CPU", "1.25x the req/s (aim ≥ 1x), 0.80x the CPU")
    assert row(rows, "peers, cam224 (3x224x224): 16 clients, gRPC, rows/s")[1:3] == (
        "bare `session.run` at batch 1 (its best): 500 rows/s", "70% (aim ≥ 85%)")
    assert row(rows, "peers, cam224 (3x224x224): 16 clients, OIP binary, rows/s")[::2] == ("400 req/s (p99 60.00 ms)", "80% (aim ≥ 85%)")
    assert row(rows, "peers, cam224 (3x224x224): 16 clients, OIP binary, p99")[:3] == (
        "60.00 ms", "2 x one batch's compute (mean 10.0 rows, 24.00 ms; max_queue_delay_us 0): 48.00 ms", "1.25x (aim ≤ 1x)")
    assert not any(k.startswith("peers, cam224 (3x224x224): 16 clients, gRPC, p99") for k in rows)   # no batch figures: no row
    assert row(rows, "peers, cam224: JPEG uploads")[1:3] == ("236 req/s before issue 25", "1.27x (aim ≥ 1.8x)")
    assert row(rows, "peers not measured")[:2] == ("bentoml", "not installed: pass --install")
    assert not any(k.startswith("peers, cam224 (3x224x224): own JSON") for k in rows)      # no figure there: no row


def test_fleet_rows(tmp_path):
    p, rows, _ = table(tmp_path, {"fleet": FIGURES["fleet"]}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    assert row(rows, "prediction log, 3x64x64: bytes a prediction") == (
        "950 B (100 of 20,000 raw inputs kept)", "`all` (every raw input, as before): 13,780 B; `none`: 880 B; the aim: 1,024 B",
        "14.5x smaller; 93% of the aim", "`python bench/fleet.py --rows 20000 --window 10000`")
    assert not any(k.startswith("prediction log, 3x224x224") for k in rows)          # no `all` and `none` figures: no row
    assert row(rows, "monitoring over 40,000 predictions")[:3] == (
        "20 MB over the 390 MB before reading; 9,500 rows/s", "over 10,000: 10 MB, 9,000 rows/s; the bound `[monitor] memory_mb`: 64 MB",
        "31% of the bound, 2.00x the memory of 10,000 (flat is 1.00x)")
    assert row(rows, "monitoring verdicts")[0:3:2] == ("checks the same; drift statistics identical to `all`", "same verdicts")
    bad = {**FIGURES["fleet"], "verdicts": {**FIGURES["fleet"]["verdicts"], "checks_auto": {"input drift": "ok"}}}
    assert row(table(tmp_path, {"fleet": bad}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})[1], "monitoring verdicts")[2] == "verdicts differ"


def test_archive_rows(tmp_path):
    p, rows, _ = table(tmp_path, {"archive": FIGURES["archive"]}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    assert row(rows, "monitoring 10,000,000 predictions: DuckDB")[1:3] == (
        "the SQLite reader over the live log: 100,000 rows/s (100 s), 137 MB; the aim: 5x; labelled rows found: 500,000 and 500,000",
        "3.00x faster")
    assert row(rows, "monitoring memory with DuckDB")[:3] == ("225 MB against 214 MB", "the bound `[monitor] memory_mb`: 256 MB",
                                                              "1.05x (flat is 1.00x); 88% of the bound")
    assert row(rows, "archive: 10,000,000 predictions")[2] == "1.7x smaller"
    assert row(rows, "ingest of 2,000 camera frames")[2:4] == ("0.50x the server's bare rate; same dataset: yes",
                                                               "`python bench/archive.py --rows 10000000 --frames 2000`")
    lake_only = {k: v for k, v in FIGURES["archive"].items() if k in ("quick", "rows", "frames", "lake")}
    _, rows, _ = table(tmp_path, {"archive": lake_only}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    assert [k for k in rows if k.startswith(("archive:", "monitoring", "ingest"))] == ["ingest of 2,000 camera frames (160 px JPEG, to 64 px RGB) from S3 (moto's server on 127.0.0.1)"]


def test_scale_and_gpu_rows(tmp_path):
    p, rows, _ = table(tmp_path, {n: FIGURES[n] for n in ("scale", "gpu")}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    cmd = "`python bench/scale.py --sizes 3000,100000 --px 128 --repeat 3 --acc-sizes 3000 --acc-px 96 --acc-epochs 5 --score-n 10000`"
    assert row(rows, "scale: ingest of 100,000 camera frames of 128 px") == (
        "210 s (476 images/s, peak 330 MB)", "the aims: at least 300 images/s, peak at most 1,536 MB", "159% of the rate aim, 21% of the memory cap", cmd)
    assert row(rows, "scale: re-ingest of 100,000 frames of 128 px after 1,000 files changed")[:3] == (
        "6.30 s (1,000 decoded, 75 of 75 shards rewritten)", "the first ingest: 210 s", "3% of it (aim under 5%)")
    assert row(rows, "scale: re-ingest of 3,000 frames")[0] == "0.12 s (30 decoded)"
    assert row(rows, "scale: ingest growth from 3,000 to 100,000")[:3] == (
        "time 35.00x, peak memory 1.10x", "linear time: 33.33x; flat memory: 1.00x", "1.05x linear")
    assert row(rows, "scale: training mobilenet_v3_small")[:3] == ("peak 900 MB, 100.0 images/s", "the cap: 1,536 MB", "59% of the cap")
    assert row(rows, "scale: test accuracy of resnet18, random init")[:3] == ("0.900 (trained in 200 s)", "convnet: 0.800 in 20.00 s", "+0.100")
    assert row(rows, "scale: test accuracy of convnet")[1:3] == ("—", "—")
    bare = "bare `session.run` on the same decoded batches: 1,250 images/s"
    assert row(rows, "scale: `mlops-nb predict` of 10,000 frames")[:3] == ("800 images/s (12.50 s)", bare, "64% of bare (aim at least 70%)")
    assert row(rows, "scale: `score_paths`")[:3] == ("1,000 images/s (10.00 s; decoding alone 2.00 s)", bare, "80% of bare (aim at least 70%)")
    cpu = "the CPU (Test CPU 3000, 2 threads), precision 32: 20.0 images/s"
    assert row(rows, "GPU: fine-tuning resnet18 on 128 px frames (batch 64, AdamW), precision bf16-mixed") == (
        "4,000.0 images/s (NVIDIA H100)", cpu, "200.0x the CPU", "`python bench/gpu.py --steps 30 --cpu-steps 5 --px 128 --repeat 3`")
    assert row(rows, "GPU: fine-tuning resnet18 on 128 px frames (batch 64, AdamW), precision 32")[2] == "100.0x the CPU"
    p, rows, _ = table(tmp_path, {"gpu": {**FIGURES["gpu"], "gpu": None}}, {"machine": MACHINE, "quick": False, "notes": [], "failed": {}})
    assert row(rows, "GPU: fine-tuning") == ("skipped: no GPU on this machine", cpu, "—", "`python bench/gpu.py --steps 30 --cpu-steps 5 --px 128 --repeat 3`")


@pytest.mark.slow              # builds three ONNX models with torch and serves one for seconds: `make test-slow`
def test_peers_quick_run_of_our_server(tmp_path):
    "bench/peers.py --quick with no peer installed measures mlops-nb serve alone on every route it has, and says so."
    out = tmp_path / "peers.json"
    p = subprocess.run([sys.executable, str(BENCH / "peers.py"), "--quick", "--peers", "", "--models", "digits", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "MLOPS_NB_CORE_LEASE": "off"})
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(out.read_text())
    ours = d["models"]["digits"]["ours"]
    assert {"json", "oip", "binary", "grpc"} <= set(ours) and all(ours[r]["rps"] > 0 and ours[r]["cpu_us"] > 0 for r in ("json", "grpc"))
    assert d["peers"] == {} and "ours/best peer" in p.stdout


def test_table_runs_a_script(tmp_path):
    "bench/table.py itself runs the scripts (not only --from-json): it passed its comparator flags by names its parser "
    "lacked (--before), so `make bench` stopped at the first script with an AttributeError."
    out = tmp_path / "table.md"
    p = subprocess.run([sys.executable, str(TABLE), "--only", "client", "--quick", "--out", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    text = out.read_text()
    assert "HTTP client as a load generator" in text and "against httpx.Client" in text and "QUICK" in text
