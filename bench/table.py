"""Not a benchmark: runs every script in bench/ and rewrites BENCHMARKS.md from their figures (what `make bench` runs).

Each script runs in turn as a subprocess with `--json` into a folder (`--quick` passed through when given; the
workbook's settings passed as `--settings` to the scripts that take one, which need a registered model: when the
workbook has none, a smoke-profile pipeline is run first in a scratch workbook and that one is passed instead). A
script that fails gives a row "failed: <its last line>" and the exit status is 1 at the end. BENCHMARKS.md gets the
date, the machine, and one table: figure | value | compared with | ratio | command.

    python bench/table.py [--quick] [--only NAME] [--save-json DIR] [--from-json DIR] [--out BENCHMARKS.md]
"""
import argparse, datetime, json, os, platform, shlex, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
META = "_run.json"          # in a JSON folder: the machine, the date and how the scripts were run


# ---------------------------------------------------------------- formatting

def num(x, d=0) -> str: return "—" if x is None else f"{x:,.{d}f}"
def sec(x) -> str: return "—" if x is None else (f"{x:.2f} s" if x < 100 else f"{x:,.0f} s")
def ms(x) -> str: return "—" if x is None else f"{x:.2f} ms"
def times(x, d=2) -> str: return "—" if x is None else f"{x:.{d}f}x"
def pct(x) -> str: return "—" if x is None else f"{x:.0%}"
def div(a, b): return a / b if a is not None and b else None


def command(name: str, d: dict, params, extra=()) -> str:
    "The command line that measures `d`: `--quick` for a quick run, else the parameters it ran with, made explicit."
    args = ["--quick"] if d.get("quick") else [x for flag, key in params if d.get(key) is not None for x in (flag, f"{d[key]:g}"
                                                                                                            if isinstance(d[key], float) else str(d[key]))]
    return shlex.join(["python", f"bench/{name}.py", *args, *extra])


# ---------------------------------------------------------------- rows of each script: (figure, value, compared with, ratio)

def rows_pipeline_overhead(d):
    what = f"pipeline overhead: cold `mlops-nb run`, profile {d['profile']} ({d['stages']} stages, papermill kernels, reports)"
    out = [(what, sec(d["mlops_nb_s"]), f"the same stage functions in one plain Python process: {sec(d['plain_s'])}",
            f"{times(d['mlops_nb_s'] / d['plain_s'])} (goal ≤ {d.get('goal', 1.3)}x)")]
    if d.get("cold_kernels_s") is not None:
        out.append((f"forked kernels: cold `mlops-nb run` with stage kernels forked from one process that imported their modules (profile {d['profile']})",
                    sec(d["mlops_nb_s"]), f"every kernel started cold, `[run] fork_kernels = false`: {sec(d['cold_kernels_s'])}",
                    f"{times(d['cold_kernels_s'] / d['mlops_nb_s'])} faster"))
    return out


def rows_cached_rerun(d):
    goal = d.get("goal_s", 1.0)
    return [(f"cached re-run, nothing changed (profile {d['profile']}; no kernel started)", sec(d["cached_median_s"]),
             f"the {goal:g} s aim (cold run {sec(d['cold_s'])})", f"{times(d['cached_median_s'] / goal)} of the aim")]


def rows_concurrent_runs(d):
    return [(f"concurrent runs: each of two `mlops-nb run` side by side (profile {d['profile']}, {d['cores']} cores), wall",
             f"{sec(d['two_wall_s'])} (train stage {sec(d['two_train_s'])})",
             f"one run alone: {sec(d['alone_wall_s'])} (train stage {sec(d['alone_train_s'])})",
             f"{times(div(d['two_wall_s'], d['alone_wall_s']))} (train {times(div(d['two_train_s'], d['alone_train_s']))}; 2x is proportional)")]


def rows_onnx_latency(d):
    return [(f"ONNX Runtime latency, batch {b['batch']} ({d['threads']} threads)", ms(b["ort_ms"]), f"torch eager: {ms(b['torch_ms'])}",
             f"{times(b['ort_speedup'], 1)} faster") for b in d["batches"]]


def rows_serve(d):
    floor = f"GET /healthz (the HTTP floor, same server): {num(d['floor_rps'])} req/s, p99 {ms(d['floor_p99'])}"
    out = []
    for k, what in (("predict", "POST /v1/predict"), ("infer", "POST OIP /v2/models/NAME/infer")):
        out += [(f"{what}, one row: throughput (one worker, logging on, {d['connections']} connections)",
                 f"{num(d[k + '_rps'])} req/s (p50 {ms(d[k + '_p50'])})", floor, f"{pct(div(d[k + '_rps'], d['floor_rps']))} of the floor"),
                (f"{what}, one row: p99", ms(d[k + "_p99"]), floor, f"{times(div(d[k + '_p99'], d['floor_p99']))} the floor's p99")]
    out.append(("bare `session.run`, batch 512 (no HTTP)", f"{num(d['bare512_rows_s'])} rows/s",
                f"bare `session.run`, batch 1: {num(d['bare1_rows_s'])} rows/s", times(div(d["bare512_rows_s"], d["bare1_rows_s"]), 1)))
    out.append(("POST /v1/predict, 512 rows a request (1 connection)",
                f"{num(d['batch512_rows_s'])} rows/s ({num(d['batch512_rps'])} req/s, p99 {ms(d['batch512_p99'])})",
                f"bare `session.run` at batch 512: {num(d['bare512_rows_s'])} rows/s",
                f"{pct(div(d['batch512_rows_s'], d['bare512_rows_s']))} of bare"))
    if d.get("mlflow_rps") is not None:
        out.append(("POST /v1/predict, one row, against MLflow", f"{num(d['predict_rps'])} req/s, p99 {ms(d['predict_p99'])}",
                    f"`mlflow models serve`, same ONNX model: {num(d['mlflow_rps'])} req/s, p99 {ms(d['mlflow_p99'])}",
                    f"{times(div(d['predict_rps'], d['mlflow_rps']), 1)} the req/s"))
    else:
        out.append(("POST /v1/predict, one row, against MLflow", "not measured (pass --mlflow-python)", "`mlflow models serve`", "—"))
    out.append(("`mlops-nb serve`: process start to ready (/readyz)", sec(d["start_s"]), "—", "—"))
    return out


def rows_crash_loss(d):
    what = f"`kill -9` of the service under load ({d['clients']} clients, {d['seconds']:g} s, one worker, flush_ms {d['flush_ms']})"
    return [(f"crash loss: {what}, acknowledged predictions missing from the log",
             f"{num(d['lost'])} of {num(d['acked'])} ({d['lost_share']:.3%})",
             f"the bound: those acknowledged within one flush interval ({d['flush_ms']} ms) plus one commit", "—"),
            (f"crash loss: {what}, the oldest lost acknowledgment, before the kill",
             f"{ms(d['max_lost_age_ms'])} (worst of {d['repeat']}: {ms(d['worst_lost_age_ms'])})",
             f"the flush interval: {ms(d['flush_ms'])}", f"{times(div(d['worst_lost_age_ms'], d['flush_ms']))} the interval (worst)"),
            ("crash loss: the log after each kill", f"`PRAGMA integrity_check` ok in {d['integrity_ok']} of {d['repeat']} runs",
             "must be all", pct(div(d["integrity_ok"], d["repeat"])))]


def rows_release(d):
    out = [(f"swap time: the service's load, verify, warm up and swap (mean of {d['swaps']} swaps under load)",
            ms(None if d.get("swap_seconds_mean_service") is None else d["swap_seconds_mean_service"] * 1000), "—", "—"),
           ("release to first answer of the new version (registry write to answer)",
            f"{sec(d['release_to_first_answer_s']['median'])} median, {sec(d['release_to_first_answer_s']['max'])} max",
            f"the service's poll, [serve] follow_ms: {d['follow_ms']} ms" if d.get("follow_ms") is not None else "—", "—"),
           ("requests failed during the swaps", f"{d['failed_during_swaps']:,} of {d['requests_during_swaps']:,}", "must be 0",
            pct(div(d["failed_during_swaps"], d["requests_during_swaps"])))]
    for sfx, what in (("", "saturated (no pause)"), ("_paced", "paced (1 ms pause per request and connection)")):
        pl, sh = d["plain" + sfx], d["shadow" + sfx]
        drop = d.get("shadow_dropped_share", {}).get("shadow" + sfx)
        out.append((f"shadow cost, {what}: /v1/predict p99 with a shadow",
                    f"{ms(sh['p99'])} ({num(sh['rps'])} req/s; the shadow dropped {pct(drop)} of requests)",
                    f"without a shadow: {ms(pl['p99'])} ({num(pl['rps'])} req/s)", f"{times(div(sh['p99'], pl['p99']))} the p99"))
    ld = d.get("apptest_load") or {}
    if "rps" in ld:
        lim = d.get("apptest_p99_limit_ms")
        out.append((f"load test: `mlops-nb apptest` ({ld['concurrency']} clients, {ld['seconds']:g} s, single rows), p99",
                    f"{ms(ld['p99_ms'])} ({num(ld['rps'])} req/s, p50 {ms(ld['p50_ms'])}, {ld['errors']} errors)",
                    f"[apptest] p99_ms limit: {ms(lim)}" if lim is not None else "—", f"{pct(div(ld['p99_ms'], lim))} of the limit" if lim else "—"))
    else:
        out.append(("load test: `mlops-nb apptest`", f"failed: {one_line(str(ld.get('error', ld)))}", "—", "—"))
    return out


def rows_soak(d):
    what = f"soak: {d['seconds']:g} s of /v1/predict (wrk -c{d['connections']}, one worker, logging on), two releases and a rollback during it"
    return [(f"{what}: failed requests", f"{d['failed']:,} of {d['requests']:,}", "must be 0", pct(div(d["failed"], d["requests"]))),
            (f"{what}: p99", f"{ms(d['p99'])} ({num(d['rps'])} req/s, p50 {ms(d['p50'])})", "the 3 ms aim", f"{pct(div(d['p99'], 3.0))} of the aim"),
            (f"{what}: resident memory after the {d['warm_up_s']:g} s warm-up and at the end",
             f"{d['rss_warm_mb']:,.1f} MB -> {d['rss_end_mb']:,.1f} MB ({d['rss_growth']:+.1%}; max {d['rss_max_mb']:,.1f} MB)",
             "growth under 10%", f"{pct(div(abs(d['rss_growth']), 0.10))} of the limit"),
            (f"{what}: rows in the prediction log", f"{d['logged']:,}", f"requests the service answered: {d['answered']:,}",
             f"{times(div(d['logged'], d['answered']), 4)}")]


def rows_log_ids(d):
    what = f"prediction log: a commit of {d['chunk']:,} rows once the log holds {d['rows']:,}"
    return [(f"{what}, the service's request ids (time-ordered, UUIDv7 layout)",
             f"{ms(d['ordered_last_ms'])} (at the start: {ms(d['ordered_first_ms'])})",
             f"random ids (uuid4-like): {ms(d['random_last_ms'])} (at the start: {ms(d['random_first_ms'])})",
             f"{times(div(d['random_last_ms'], d['ordered_last_ms']))} faster")]


def rows_client(d):
    c, ours = d["clients"], d["clients"]["core"]
    what = f"HTTP client as a load generator (apptest, simulate): mlops_nb.core.client, {d['concurrency']} threads, one-row JSON"
    fig = lambda v: f"{num(v['rps'])} req/s, {num(v['cpu_us'])} µs of client CPU a request"
    return [(f"{what}, against {c[k]['what']}", fig(ours), fig(c[k]), f"{times(div(ours['rps'], c[k]['rps']))} the req/s")
            for k in ("httpclient", "httpcore", "httpx")]


def rows_drift(d):
    n, q = d["rows"], d["rows"] // 4
    what = f"drift over {n:,} rows x {d['features']} features (KS+PSI+BH, chunked)"
    t, m = d.get(f"ours_{n}_seconds"), d.get(f"ours_{n}_peak_mb")
    mq = d.get(f"ours_{q}_peak_mb")
    if d.get(f"evidently_{n}_seconds") is not None:
        ev_t, ev_m = d[f"evidently_{n}_seconds"], d[f"evidently_{n}_peak_mb"]
        return [(f"{what}: time", sec(t), f"Evidently DataDriftPreset(method='ks'): {sec(ev_t)}", f"{times(div(ev_t, t), 1)} faster"),
                (f"{what}: peak memory", f"{num(m)} MB ({num(mq)} MB at {q:,} rows)", f"Evidently: {num(ev_m)} MB",
                 f"{times(div(ev_m, m), 1)} less")]
    nm = "not measured (pass --evidently-python)"
    return [(f"{what}: time", sec(t), f"Evidently: {nm}", "—"),
            (f"{what}: peak memory", f"{num(m)} MB ({num(mq)} MB at {q:,} rows)", f"Evidently: {nm}", "—")]


def rows_monitor(d):
    day, qu = d["library"]["day"], d["library"]["quarter"]
    rate = lambda r: div(r["rows"], r["seconds"])
    clean = [abs(r["error"]) for r in d["estimate"] if r["severity"] == 0 or r["drift"] == "class-shift"]
    allerr = [abs(r["error"]) for r in d["estimate"]]
    return [(f"monitor: `mlops-nb monitor --every 1d` over a day of {d['rows']:,} predictions (papermill run, report included)",
             sec(d["cli_s"]), f"`monitor()` + `evaluate()` alone over the day: {sec(day['seconds'])}",
             f"{times(div(d['cli_s'], day['seconds']))} the library's time"),
            (f"monitor: `monitor()` + `evaluate()` throughput over the day ({day['rows']:,} rows)", f"{num(rate(day))} rows/s",
             f"over a quarter of the day ({qu['rows']:,} rows): {num(rate(qu))} rows/s", times(div(rate(day), rate(qu)))),
            ("monitor: peak memory over the day", f"{num(day['peak_mb'])} MB",
             f"over a quarter of the day: {num(qu['peak_mb'])} MB", f"{times(div(day['peak_mb'], qu['peak_mb']))} (flat is 1.00x)"),
            ("label-free accuracy estimate (CBPE): median |error| without input drift (clean, class-shift)",
             num(statistics.median(clean), 3) if clean else "—",
             f"all simulated drifts and severities: median {num(statistics.median(allerr), 3)}, max {num(max(allerr), 3)}" if allerr else "—",
             "—")]


def rows_scale(d):
    aims, cap = d.get("aims", {}), d.get("aims", {}).get("peak_mb", 1536.0)
    rate = aims.get("ingest_images_s", 300.0)
    out = []
    for r in d.get("ingest", []):
        out.append((f"scale: ingest of {r['n']:,} camera frames of {r['px']} px (every core, into shards)",
                    f"{sec(r['seconds'])} ({num(r['images_s'])} images/s, peak {num(r['peak_mb'])} MB)",
                    f"the aims: at least {num(rate)} images/s, peak at most {num(cap)} MB",
                    f"{pct(div(r['images_s'], rate))} of the rate aim, {pct(div(r['peak_mb'], cap))} of the memory cap"))
        st = r.get("reingest_stats") or {}
        shards = f", {st['shards_written']} of {st['shards_written'] + st['shards_reused']} shards rewritten" if "shards_reused" in st else ""
        out.append((f"scale: re-ingest of {r['n']:,} frames of {r['px']} px after {r['changed']:,} files changed (1%: every 100th file)",
                    f"{sec(r['reingest_s'])} ({num(r.get('reingest_decoded'))} decoded{shards})", f"the first ingest: {sec(r['seconds'])}",
                    f"{pct(r['reingest_ratio'])} of it (aim under {pct(aims.get('reingest_ratio', 0.05))})"))
    for g in d.get("growth", []):
        out.append((f"scale: ingest growth from {g['from']:,} to {g['to']:,} frames of {g['px']} px ({g['images']:.1f}x the images)",
                    f"time {times(g['time'])}, peak memory {times(g['memory'])}", f"linear time: {times(g['images'])}; flat memory: 1.00x",
                    f"{times(div(g['time'], g['images']))} linear"))
    if t := d.get("train"):
        out.append((f"scale: training {t['arch']} ({t['epochs']} epoch(s), CPU, random init) on {t['n']:,} frames of {t['px']} px streamed from shards",
                    f"peak {num(t['peak_mb'])} MB, {num(t['images_s'], 1)} images/s", f"the cap: {num(cap)} MB", f"{pct(div(t['peak_mb'], cap))} of the cap"))
    base = {(r["n"], r["px"]): r for r in d.get("accuracy", []) if r["arch"] == "convnet"}
    for r in d.get("accuracy", []):
        c = base.get((r["n"], r["px"]))
        out.append((f"scale: test accuracy of {r['arch']}, random init (no pretrained weights can be fetched), {r['n']:,} frames of {r['px']} px, "
                    f"{r['epochs']} epoch(s)", f"{r['test_acc']:.3f} (trained in {sec(r['seconds'])})",
                    f"convnet: {c['test_acc']:.3f} in {sec(c['seconds'])}" if c and r["arch"] != "convnet" else "—",
                    f"{r['test_acc'] - c['test_acc']:+.3f}" if c and r["arch"] != "convnet" else "—"))
    if s := d.get("scoring"):
        what = f"{s['images']:,} frames of {s['px']} px, {s['arch']} (untrained), batch {s['batch']}"
        bare = f"bare `session.run` on the same decoded batches: {num(s['bare_images_s'])} images/s"
        share = lambda v: f"{pct(v)} of bare (aim at least {pct(aims.get('predict_share', 0.7))})"
        out.append((f"scale: `mlops-nb predict` of {what}, the whole command", f"{num(s['cli_images_s'])} images/s ({sec(s['cli_s'])})",
                    bare, share(s["cli_share"])))
        out.append((f"scale: `score_paths` (predict's decode and score, one process) of {what}",
                    f"{num(div(s['images'], s['library_s']))} images/s ({sec(s['library_s'])}; decoding alone {sec(s['decode_s'])})",
                    bare, share(s["library_share"])))
    return out


def rows_gpu(d):
    what = f"fine-tuning resnet18 on {d['px']} px frames (batch {d['batch']}, AdamW)"
    cpu = f"the CPU ({d['cpu_name']}, {d['cpu_threads']} threads), precision 32: {num(d['cpu_images_s'], 1)} images/s"
    if d.get("gpu") is None:
        return [(f"GPU: {what}", "skipped: no GPU on this machine", cpu, "—")]
    g = d["gpu"]
    return [(f"GPU: {what}, precision {p}", f"{num(v, 1)} images/s ({g['name']})" if v is not None else "not supported by this GPU", cpu,
             f"{times(div(v, d['cpu_images_s']), 1)} the CPU") for p, v in g["images_s"].items()]


PEER_NAMES = {"mlserver": "MLServer", "kserve": "KServe", "bentoml": "BentoML", "ray": "Ray Serve"}
PEER_ROUTES = {"json": "own JSON, one row", "oip": "OIP REST JSON, one row", "binary": "OIP REST binary tensor, one row",
               "grpc": "OIP gRPC (raw contents), one row", "c16": "16 concurrent clients, each server's fastest route"}


def rows_peers(d):
    "Per model and route: mlops-nb serve against every peer (ratio to the best), 16 clients and JPEG against the aims, "
    "and the A/B against --before's build."
    cell = lambda c: "—" if c is None else ("failed" if isinstance(c, str) else f"{num(c['rps'])} req/s (p99 {ms(c['p99'])})")
    out = []
    for name, g in d["models"].items():
        shape, ours, b = "x".join(map(str, g["shape"])), g["ours"], {int(k): v for k, v in g["bare"].items()}
        best_b = max(b, key=b.get)
        for r, what in PEER_ROUTES.items():
            peers = {p: g[p].get(r) for p in d["peers"] if p != "before" and p in g}
            if ours.get(r) is None and not any(peers.values()): continue
            ok = [c["rps"] for c in peers.values() if isinstance(c, dict)]
            vs = "; ".join(f"{PEER_NAMES.get(p, p)} {cell(c)}" for p, c in peers.items() if c is not None) or "no peer has this route"
            ratio = f"{times(div(ours[r]['rps'], max(ok)))} the best peer" if ok and isinstance(ours.get(r), dict) else "—"
            out.append((f"peers, {name} ({shape}): {what}", cell(ours.get(r)), vs, ratio))
        for r, what in (("c16", "16 clients, gRPC"), ("c16_binary", "16 clients, OIP binary")):
            c = ours.get(r)
            if isinstance(c, dict):
                out.append((f"peers, {name} ({shape}): {what}, rows/s against the ceiling", cell(c),
                            f"bare `session.run` at batch {best_b} (its best): {num(b[best_b])} rows/s",
                            f"{pct(div(c['rps'], b[best_b]))} (aim ≥ 85%)"))
                if c.get("batch_ms") is not None:
                    out.append((f"peers, {name} ({shape}): {what}, p99 against the batches' compute", ms(c["p99"]),
                                f"2 x one batch's compute (mean {c['batch_rows']:.1f} rows, {ms(c['batch_ms'])}; "
                                f"max_queue_delay_us 0): {ms(2 * c['batch_ms'])}", f"{times(div(c['p99'], 2 * c['batch_ms']))} (aim ≤ 1x)"))
        if isinstance(ours.get("jpeg"), dict):
            out.append((f"peers, {name}: JPEG uploads at 224 px, /v1/predict/image", cell(ours["jpeg"]), "236 req/s before issue 25",
                        f"{times(div(ours['jpeg']['rps'], 236))} (aim ≥ 1.8x)"))
        for r in ("json", "oip"):
            before = g.get("before", {}).get(r)
            if isinstance(before, dict) and isinstance(ours.get(r), dict):
                out.append((f"peers, {name} ({shape}): against the build before, {PEER_ROUTES[r]} (req/s; the server's CPU a request)",
                            f"{cell(ours[r])}; {num(ours[r].get('cpu_us'))} µs CPU",
                            f"{d.get('before')}: {cell(before)}; {num(before.get('cpu_us'))} µs CPU",
                            f"{times(div(ours[r]['rps'], before['rps']))} the req/s (aim ≥ 1x), "
                            f"{times(div(ours[r].get('cpu_us'), before.get('cpu_us')))} the CPU"))
    if d.get("missing"): out.append(("peers not measured", ", ".join(d["missing"]), "not installed: pass --install", "—"))
    return out


def rows_fleet(d):
    "Bytes a prediction by input size and `[serve] log_inputs` (the 1 KB aim), monitoring memory over N and 4N frames, "
    "and the verdicts of `all` against `auto`."
    by = {(r["input"], r["policy"]): r for r in d["bytes"]}
    out = []
    for name in dict.fromkeys(r["input"] for r in d["bytes"]):
        a, al, no = by.get((name, "auto")), by.get((name, "all")), by.get((name, "none"))
        if not (a and al and no): continue
        out.append((f"prediction log, {name}: bytes a prediction with `log_inputs = auto` (the default)",
                    f"{num(a['bytes'])} B ({a['raw_kept']:,} of {a['rows']:,} raw inputs kept)",
                    f"`all` (every raw input, as before): {num(al['bytes'])} B; `none`: {num(no['bytes'])} B; the aim: 1,024 B",
                    f"{times(div(al['bytes'], a['bytes']), 1)} smaller; {pct(div(a['bytes'], 1024))} of the aim"))
    m = d["monitor"]
    if len(m) == 2:
        one, four = m
        grew = lambda r: r["peak_mb"] - r["base_mb"]
        out.append((f"monitoring over {four['rows']:,} predictions of 3x224x224: memory and speed",
                    f"{num(grew(four))} MB over the {num(four['base_mb'])} MB before reading; {num(four['rows_per_s'])} rows/s",
                    f"over {one['rows']:,}: {num(grew(one))} MB, {num(one['rows_per_s'])} rows/s; the bound `[monitor] memory_mb`: "
                    f"{four['memory_mb']} MB", f"{pct(div(grew(four), four['memory_mb']))} of the bound, "
                    f"{times(div(grew(four), grew(one)))} the memory of {one['rows']:,} (flat is 1.00x)"))
    v = d["verdicts"]
    same = v["checks_all"] == v["checks_auto"] == v["checks_raw"]
    out.append((f"monitoring verdicts on {v['rows']:,} predictions of 3x64x64 (second half brightened), `log_inputs = auto`",
                f"checks {'the same' if same else 'DIFFERENT'}; drift statistics {'identical' if v['same_all_auto'] else 'DIFFERENT'} to `all`",
                "features computed from the raw frames (monitoring before summaries were logged): largest |KS difference| "
                f"{v['max_stat_diff_raw']:.2g}", "same verdicts" if same else "verdicts differ"))
    return out


def rows_archive(d):
    "The archive: segment writing, monitoring with DuckDB over segments against SQLite over the live log (the 5x aim, "
    "memory flat), ingest from S3 against a local folder."
    out = []
    if "roll" not in d: return out + _lake_rows(d)
    r = d["roll"]
    out += [(f"archive: {d['rows']:,} predictions (3x64x64) rolled into Parquet segments (`mlops_nb.core.archive.roll`, a local folder)",
            f"{num(r['rows_per_s'])} rows/s; {r['segments']:,} segments, {num(r['bytes_a_prediction'])} B a prediction",
            "the live log (SQLite) it was rolled from: " + f"{num(d['log']['log_mb'] * 2**20 / d['rows'])} B a prediction",
            times(div(d["log"]["log_mb"] * 2**20 / d["rows"], r["bytes_a_prediction"]), 1) + " smaller")]
    by = {(m["engine"], m["rows"]): m for m in d["monitor"]}
    full = max(m["rows"] for m in d["monitor"]); part = min(m["rows"] for m in d["monitor"])
    sq, dk, dq = by[("sqlite", full)], by[("duckdb", full)], by[("duckdb", part)]
    grew = lambda m: m["peak_mb"] - m["base_mb"]
    out.append((f"monitoring {full:,} predictions: DuckDB over the segments (`--engine duckdb`)",
                f"{num(dk['rows_per_s'])} rows/s ({sec(dk['seconds'])}); {num(grew(dk))} MB over the {num(dk['base_mb'])} MB before reading",
                f"the SQLite reader over the live log: {num(sq['rows_per_s'])} rows/s ({sec(sq['seconds'])}), {num(grew(sq))} MB; "
                f"the aim: 5x; labelled rows found: {dk['labelled']:,} and {sq['labelled']:,}",
                f"{times(div(dk['rows_per_s'], sq['rows_per_s']))} faster"))
    out.append((f"monitoring memory with DuckDB: {full:,} predictions against {part:,}", f"{num(grew(dk))} MB against {num(grew(dq))} MB",
                f"the bound `[monitor] memory_mb`: {dk['memory_mb']} MB", f"{times(div(grew(dk), grew(dq)))} (flat is 1.00x); "
                f"{pct(div(grew(dk), dk['memory_mb']))} of the bound"))
    return out + _lake_rows(d)

def rows_detect(d):
    "Per model family: the monitor's false alarms on clean windows (the 5% aim) against the rule before, the medium "
    "shifts caught with power 0.9 at 1,000 predictions (or the largest size a family has), and the size each needs; "
    "with --live, the time to detect end to end."
    out = []
    if lv := d.get("live"):
        r0 = lv[0]
        out.append((f"time to detect end to end: `serve`, `simulate` {r0['rate']:,} predictions an hour for a day and, from noon, "
                    f"{r0['share']:.0%} more under a medium shift (severity {r0['severity']:g}), `monitor --every 1h`",
                    ", ".join(f"{r['shift']} " + ("not in 12 h" if r["hours_to_alert"] is None else
                                                  f"{r['hours_to_alert']:g} h ({r['predictions_to_alert']:,} predictions)") for r in lv),
                    f"clean hours that alerted before noon: {sum(r['clean_alerts'] for r in lv)} of {sum(r['clean_hours'] for r in lv)}",
                    f"{sum(r['hours_to_alert'] is not None for r in lv)} of {len(lv)} shifts caught"))
    for fam, info in d["families"].items():
        t = info["table"]
        clean = {r["n"]: r["rates"] for r in t if r["pool"] == "clean"}
        worst = max(clean, key=lambda n: clean[n]["overall"])
        sizes = sorted(clean)
        out.append((f"detection, {fam}: false alarms of the monitor's drift verdict on clean windows ({', '.join(f'{n:,}' for n in sizes)} "
                    f"predictions, {d['trials']} windows each)", f"at most {pct(clean[worst]['overall'])} (at {worst:,})",
                    "the rule before (effect sizes, no test): " + ", ".join(f"{pct(clean[n]['before'])} at {n:,}" for n in sizes) + "; the aim: 5%",
                    "aim met" if clean[worst]["overall"] <= 0.05 else "aim MISSED"))
        at = 1000 if 1000 in sizes else sizes[-1]
        med = {r["pool"].rsplit(" ", 1)[0]: r["rates"]["overall"] for r in t if r["pool"].endswith(" medium") and r["n"] == at}
        missed = [f"{k} {v:.2f}" for k, v in med.items() if v < 0.9]
        need = {k.rsplit(" ", 1)[0]: v for k, v in info["needed"].items() if k.endswith(" medium")}
        out.append((f"detection, {fam}: medium shifts caught with power 0.9 at {at:,} predictions",
                    f"{sum(v >= 0.9 for v in med.values())} of {len(med)}" + (f"; missed: {', '.join(missed)}" if missed else ""),
                    "predictions each needs: " + ", ".join(f"{k} {'>' + format(sizes[-1], ',') if v is None else format(v, ',')}" for k, v in need.items()),
                    f"the aim is at 1,000: not measured ({info['held_rows']:,} held-out rows)" if at != 1000 else
                    "aim MISSED" if missed else "aim met"))
        if info.get("hours"):
            h = {k: v.get(str(at), v.get(at)) for k, v in info["hours"].items()}     # JSON made the sizes text
            out.append((f"detection, {fam}: time to the first alert of `monitor --every 1h` after a medium shift starts, at {at:,} predictions an hour",
                        ", ".join(f"{k} {'never' if v is None else f'{v} h'}" for k, v in h.items()),
                        "the median hour, from the power of one hour's window (each hour is judged alone)",
                        f"{sum(v == 1 for v in h.values())} of {len(h)} in the first hour"))
        if e := info.get("estimate"):
            out.append((f"label-free accuracy, {fam}: the reweighted estimate on the windows it calls reliable ({e['reliable']:,} of "
                        f"{e['windows']:,} windows of {e['n']:,} predictions, every shift and severity)",
                        f"median |error| {e['reliable_median']:.3f}, max {e['reliable_max']:.3f}" if e["reliable"] else "no window reliable",
                        f"CBPE on every window: median {e['cbpe_median']:.3f}, max {e['cbpe_max']:.3f}; the aims: median 0.01, max 0.10",
                        "aims met" if e["reliable"] and e["reliable_median"] <= 0.01 and e["reliable_max"] <= 0.10 else "aims MISSED"))
            out.append((f"label-free accuracy, {fam}: windows where CBPE is off by more than 0.10 that the verdict calls unreliable",
                        f"{e['cbpe_off_unreliable']:,} of {e['cbpe_off']:,}", f"reliable windows off by more than 0.10: {e['reliable_off']:,}",
                        "aim met" if e["cbpe_off_unreliable"] == e["cbpe_off"] and not e["reliable_off"] else "aim MISSED"))
    return out


def _lake_rows(d) -> list:
    if not (lk := d.get("lake")): return []
    raw = f"; a bare fetch of the same objects from that server: {num(lk['s3_raw_fetch_per_s'])}/s" if "s3_raw_fetch_per_s" in lk else ""
    return [(f"ingest of {lk['frames']:,} camera frames (160 px JPEG, to 64 px RGB) from S3 (moto's server on 127.0.0.1)",
             f"{num(lk['s3_first_per_s'])} images/s; unchanged again: {num(lk['s3_again_per_s'])} images/s",
             f"the same frames from a local folder: {num(lk['local_first_per_s'])} images/s; again: {num(lk['local_again_per_s'])} images/s{raw}",
             f"{times(div(lk['s3_first_per_s'], lk['s3_raw_fetch_per_s'] if 's3_raw_fetch_per_s' in lk else None))} the server's bare rate; "
             f"same dataset: {'yes' if lk['same_dataset'] else 'NO'}")]


# name: (what it measures, rows, parameters made explicit in the command, flags passing a comparison's interpreter)
SPECS = {
    "pipeline_overhead": ("pipeline overhead vs plain Python", rows_pipeline_overhead, [("--profile", "profile"), ("--repeat", "repeat")]),
    "cached_rerun": ("cached re-run", rows_cached_rerun, [("--profile", "profile"), ("--repeat", "repeat")]),
    "concurrent_runs": ("concurrent runs", rows_concurrent_runs, [("--profile", "profile"), ("--repeat", "repeat")]),
    "onnx_latency": ("ONNX Runtime vs torch eager latency", rows_onnx_latency, [("--repeat", "repeat")]),
    "serve": ("service throughput and p99, bare session, MLflow, start to ready", rows_serve,
              [("--repeat", "repeat"), ("--seconds", "seconds"), ("--connections", "connections"), ("--mlflow-python", "mlflow_python")]),
    "crash_loss": ("crash loss under kill -9", rows_crash_loss,
                   [("--repeat", "repeat"), ("--seconds", "seconds"), ("--clients", "clients"), ("--flush-ms", "flush_ms")]),
    "log_ids": ("prediction log commits, time-ordered against random request ids", rows_log_ids,
                [("--rows", "rows"), ("--chunk", "chunk"), ("--repeat", "repeat")]),
    "release": ("swap time, failed during swaps, shadow cost, load test", rows_release,
                [("--repeat", "repeat"), ("--seconds", "seconds"), ("--swaps", "swaps")]),
    "client": ("the workbook's HTTP client against http.client, httpcore and httpx", rows_client,
               [("--seconds", "seconds"), ("--concurrency", "concurrency"), ("--repeat", "repeat")]),
    "drift": ("drift vs Evidently", rows_drift, [("--rows", "rows"), ("--features", "features"), ("--repeat", "repeat"),
                                                 ("--evidently-python", "evidently_python")]),
    "monitor": ("monitor over a day of predictions, label-free estimate", rows_monitor, [("--rows", "rows"), ("--repeat", "repeat")]),
    "scale": ("camera frames at scale: ingest, re-ingest, training memory, accuracy by architecture, batch scoring", rows_scale,
              [("--sizes", "sizes_arg"), ("--px", "px_arg"), ("--repeat", "repeat"), ("--acc-sizes", "acc_sizes_arg"), ("--acc-px", "acc_px"),
               ("--acc-epochs", "acc_epochs"), ("--score-n", "score_n")]),
    "gpu": ("fine-tuning resnet18, GPU against CPU", rows_gpu, [("--steps", "steps"), ("--cpu-steps", "cpu_steps"), ("--px", "px"), ("--repeat", "repeat")]),
    "peers": ("mlops-nb serve against MLServer, KServe, BentoML and Ray Serve", rows_peers,
              [("--models", "models_arg"), ("--repeat", "repeat"), ("--seconds", "seconds"), ("--connections", "connections"),
               ("--before", "before")]),
    "fleet": ("the prediction log sized for images: bytes a prediction, monitoring memory, verdicts by policy", rows_fleet,
              [("--rows", "rows"), ("--window", "window")]),
    "archive": ("the fleet's archive: segments written, monitoring with DuckDB against SQLite, ingest from S3", rows_archive,
                [("--rows", "rows"), ("--frames", "frames")]),
    "detect": ("false alarms and detection power of the monitor's checks, Failing Loudly's way", rows_detect,
               [("--trials", "trials"), ("--sizes", "sizes_arg"), ("--px", "px")]),
    "soak": ("the service held under load, releases and a rollback during it", rows_soak, [("--seconds", "seconds"), ("--connections", "connections")]),
}
COMPARATORS = {"--mlflow-python": "mlflow_python", "--evidently-python": "evidently_python", "--before": "before"}
EXTRA = {"peers": ["--install"]}     # flags a script gets in a full (not --quick) run


def one_line(text: str) -> str:
    "The last non-empty line of `text`, shortened, safe in a table cell."
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    s = lines[-1] if lines else "no output"
    return s[:200] + "…" if len(s) > 200 else s


def rows_of(name: str, d: dict | None, failed: str | None, cmd: str | None) -> list:
    "The table rows of script `name` from its figures `d` (None when it wrote none) and its failure (None when it passed)."
    title, fn, params = SPECS.get(name, (name, None, []))
    if d is not None and cmd is None:
        cmd = command(name, d, [p for p in params if p[0] not in COMPARATORS],
                      [x for flag, key in params if flag in COMPARATORS and d.get(key) for x in (flag, d[key])])
    cmd = f"`{cmd or f'python bench/{name}.py'}`"
    out = []
    if d is not None:
        if fn is None: out.append((f"bench/{name}.py", "measured, but bench/table.py has no rows for it", "—", "—"))
        else:
            try: out += fn(d)
            except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError) as e:
                out.append((title, f"failed: its JSON lacks a figure ({type(e).__name__}: {one_line(str(e))})", "—", "—"))
                failed = failed or "unreadable JSON"
    if failed is not None: out.append((title, f"failed: {failed}", "—", "—"))
    if not out: out.append((title, "not run", "—", "—"))
    return [(*r, cmd) for r in out]


# ---------------------------------------------------------------- the machine

def machine() -> dict:
    from importlib.metadata import version, PackageNotFoundError
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): pass
    mem = None
    try: mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal:"))) / 2**20
    except (OSError, StopIteration): pass
    osname = platform.platform()
    try:
        rel = dict(l.rstrip("\n").split("=", 1) for l in open("/etc/os-release") if "=" in l)
        osname = f"{rel.get('PRETTY_NAME', '').strip(chr(34))}, Linux {platform.release()}"
    except OSError: pass
    def v(p):
        try: return version(p)
        except PackageNotFoundError: return "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        commit = commit + (" (uncommitted changes)" if dirty else "") if commit else None
    except OSError: commit = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gib": mem, "os": osname,
            "python": platform.python_version(), "packages": {p: v(p) for p in ("torch", "onnxruntime", "uvicorn", "numpy")},
            "commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def markdown(meta: dict, rows: list) -> str:
    m = meta["machine"]
    cores = f"{m['cores']} cores" + (f" ({m['usable_cores']} usable by this process)" if m.get("usable_cores") not in (None, m["cores"]) else "")
    pk = ", ".join(f"{p} {v}" for p, v in m["packages"].items())
    lines = ["# Benchmarks", "",
             "<!-- generated by `make bench` (python bench/table.py): do not edit by hand; run it again instead -->",
             f"Generated by `make bench` (`python bench/table.py`) on {m['date']}: do not edit by hand. "
             + ("Each figure is from one run of its script (--quick)." if meta.get("quick") else
                "Each figure is the median of several runs (the script's --repeat), measured side by side in one run of its script."), ""]
    if meta.get("quick"):
        lines += ["> **WARNING: QUICK FIGURES (`--quick`).** Every script ran its smallest smoke-sized setting (one repeat, "
                  "1 s load runs, 20,000 rows instead of 1,000,000, the smoke profile). These numbers only show that the benchmarks "
                  "run; they are NOT measurements. Run `make bench` for the real table.", ""]
    lines += ["**Machine:** " + f"{m['cpu']}, {cores}, " + (f"{m['memory_gib']:.1f} GiB memory, " if m.get("memory_gib") else "")
              + f"{m['os']}, Python {m['python']}; {pk}" + (f"; commit {m['commit']}" if m.get("commit") else "") + ".", ""]
    for note in meta.get("notes", []): lines += [f"**Note:** {note}", ""]
    lines += ["| figure | value | compared with | ratio | command |", "|---|---|---|---|---|"]
    cell = lambda c: str(c).replace("\n", " ").replace("|", "\\|")          # a pipe would end the cell, even in a code span
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- running the scripts

def ordered(names) -> list:
    "`names` in the table's order: SPECS' order, then any script it does not know, by name."
    return sorted(set(names), key=lambda n: (list(SPECS).index(n) if n in SPECS else len(SPECS), n))


def scripts(only=None) -> list:
    names = ordered(p.stem for p in HERE.glob("*.py") if p.name != "table.py")
    if only:
        unknown = [n for n in only if n not in names]
        if unknown: raise SystemExit(f"no bench script {', '.join(unknown)} (there are: {', '.join(names)})")
        names = [n for n in names if n in only]
    return names


def takes(name: str, flag: str) -> bool: return f'"{flag}"' in (HERE / f"{name}.py").read_text()


def model_settings(given, work: Path, notes: list, users: list):
    "The settings file to pass as --settings: `given`, or the workbook's, when it has a registered model; else a scratch "
    "workbook's, where a smoke-profile pipeline run has registered one. Returns (path or None, failure or None)."
    try:
        from mlops_nb.core.config import load_settings
        from mlops_nb.build.registry import registry_for
        from mlops_nb.deploy.served import pick
        s = load_settings(given)
        if s.registry is None or not Path(s.registry).exists(): raise LookupError(f"no registry at {s.registry}")
        pick(registry_for(s), None)
        return (str(given) if given else None), None
    except Exception as e:
        why = one_line(str(e)) or type(e).__name__
    from mlops_nb.core.config import scratch_settings
    scratch = scratch_settings(work / "workbook", Path(given) if given else REPO / "settings.ini")
    print(f"== the workbook has no model to benchmark ({why}): a smoke-profile pipeline run in a scratch workbook first", flush=True)
    t = time.perf_counter()
    p = subprocess.run([str(Path(sys.executable).parent / "mlops-nb"), "run", "-q", "--profile", "smoke"], cwd=REPO,
                       env={**os.environ, "MLOPS_NB_SETTINGS": str(scratch), "WANDB_MODE": "disabled"},
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode: return None, f"no registered model, and the smoke pipeline run failed: {one_line(p.stderr or p.stdout)}"
    notes.append(f"the workbook had no registered model ({why}), so the scripts that need one ({', '.join(users)}) measured a smoke-profile model (1 epoch, 8 channels) from a scratch workbook, trained in "
                 f"{time.perf_counter() - t:.0f} s before them. Run `make run` first for figures of the default model.")
    return str(scratch), None


def run_all(a, out_dir: Path) -> int:
    with tempfile.TemporaryDirectory() as work: return _run_all(a, out_dir, Path(work))


def _run_all(a, out_dir: Path, work: Path) -> int:
    names = scripts(a.only)
    meta = {"machine": machine(), "quick": a.quick, "notes": [], "commands": {}, "failed": {}, "seconds": {}}
    need_model = [n for n in names if takes(n, "--settings")]
    settings, no_model = (model_settings(a.settings, work, meta["notes"], need_model) if need_model else (None, None))
    for n in names:
        cmd = [sys.executable, str(HERE / f"{n}.py"), *(["--quick"] if a.quick else EXTRA.get(n, []))]
        if n in need_model and settings: cmd += ["--settings", settings]
        for flag, key in COMPARATORS.items():
            if getattr(a, key) and takes(n, flag): cmd += [flag, getattr(a, key)]
        shown = shlex.join(["python", f"bench/{n}.py", *cmd[2:]])
        meta["commands"][n] = shown
        print(f"== {shown}", flush=True)
        (out_dir / f"{n}.json").unlink(missing_ok=True)
        if n in need_model and no_model:
            meta["failed"][n] = no_model; print(f"   failed: {no_model}", flush=True); continue
        t = time.perf_counter()
        with tempfile.TemporaryFile("w+") as err:
            try:
                p = subprocess.run([*cmd, "--json", str(out_dir / f"{n}.json")], cwd=REPO, stderr=err, stdin=subprocess.DEVNULL,
                                   text=True, timeout=a.timeout)
                rc = p.returncode
            except subprocess.TimeoutExpired: rc = None
            err.seek(0); text = err.read()
        meta["seconds"][n] = time.perf_counter() - t
        if rc != 0:
            meta["failed"][n] = f"timed out after {a.timeout:g} s" if rc is None else one_line(text)
            sys.stderr.write(text[-3000:])
            print(f"   failed ({meta['seconds'][n]:.0f} s): {meta['failed'][n]}", flush=True)
        else: print(f"   ({meta['seconds'][n]:.0f} s)", flush=True)
    (out_dir / META).write_text(json.dumps(meta, indent=2))
    return len(meta["failed"])


def build(json_dir: Path, only=None) -> tuple[str, int]:
    "BENCHMARKS.md's text from the JSON files in `json_dir`, and the number of scripts that failed or gave no figures."
    meta = json.loads((json_dir / META).read_text()) if (json_dir / META).exists() else {}
    if "machine" not in meta:
        meta["machine"] = machine()
        meta.setdefault("notes", []).append("rebuilt from saved JSON without a record of the machine: the machine above is the one that built the table")
    rows, bad = [], 0
    names = ordered(only or {*SPECS, *(p.stem for p in json_dir.glob("*.json") if p.name != META)})
    for n in names:
        f = json_dir / f"{n}.json"
        d = json.loads(f.read_text()) if f.exists() else None
        failed = meta.get("failed", {}).get(n)
        if (json_dir / f"{n}.failed").exists(): failed = one_line((json_dir / f"{n}.failed").read_text())
        if d is None and failed is None and meta.get("commands") and n not in meta["commands"]: continue   # not asked for (--only)
        r = rows_of(n, d, failed, None if d is not None else meta.get("commands", {}).get(n))
        bad += failed is not None or d is None or any(str(x[1]).startswith("failed:") for x in r)
        rows += r
    if "quick" not in meta: meta["quick"] = any(json.loads(p.read_text()).get("quick") for p in json_dir.glob("*.json") if p.name != META)
    rows.sort(key=lambda r: r[0].startswith(("load test", "soak")))          # stable: the load-test and soak figures last
    return markdown(meta, rows), bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script: smoke-sized figures, said loudly in the table")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only bench/NAME.py (repeatable); the table goes to stdout unless --out")
    ap.add_argument("--from-json", metavar="DIR", help="run nothing: rebuild the table from the JSON files in DIR (NAME.json, _run.json)")
    ap.add_argument("--save-json", metavar="DIR", help="keep the scripts' JSON files (and _run.json) in DIR, for --from-json")
    ap.add_argument("--out", help="where to write the table (default: BENCHMARKS.md; stdout with --only); - for stdout")
    ap.add_argument("--settings", help="the workbook's settings.ini for the scripts that take --settings (default: found as mlops-nb finds it)")
    ap.add_argument("--mlflow-python", help="passed to the scripts that take it (bench/serve.py): a Python with MLflow")
    ap.add_argument("--evidently-python", help="passed to the scripts that take it (bench/drift.py): a Python with Evidently")
    ap.add_argument("--before", help="passed to the scripts that take it (bench/peers.py): the Python of a checkout of the commit "
                                     "before, for the A/B of the digits model")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds a script may run before it counts as failed (default: %(default)s)")
    a = ap.parse_args()
    out = a.out or ("-" if a.only else str(REPO / "BENCHMARKS.md"))
    t0 = time.perf_counter()
    if a.from_json:
        text, bad = build(Path(a.from_json), a.only)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(a.save_json) if a.save_json else Path(tmp)
            d.mkdir(parents=True, exist_ok=True)
            bad = run_all(a, d)
            if a.only:
                m = json.loads((d / META).read_text()); m["only"] = a.only; (d / META).write_text(json.dumps(m, indent=2))
            text, bad2 = build(d, a.only)
            bad = max(bad, bad2)
    if out == "-": sys.stdout.write(text)
    else:
        Path(out).write_text(text)
        print(f"wrote {out}" + ("" if a.from_json else f" in {time.perf_counter() - t0:.0f} s"))
    if bad: raise SystemExit(f"{bad} benchmark script(s) failed or gave no figures: see the table")


if __name__ == "__main__":
    main()
