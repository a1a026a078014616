"""Fine-tuning resnet18 on 128 px frames, GPU against CPU, images/s.

Draws --frames camera-like frames in memory (mlops_nb.build.frames.make_frame), builds `mlops_nb.build.model.Classifier("resnet18", 3, 3)`
and times --steps training steps (batch --batch, AdamW, cross-entropy) after --warmup untimed ones: on the GPU at
precision 32, bf16-mixed and 16-mixed (autocast; 16-mixed with a gradient scaler), and on the CPU at precision 32 with
--cpu-steps steps. Each figure is the median of --repeat timings. Without a GPU it measures the CPU, says the GPU part
was skipped and writes "gpu": null.

    python bench/gpu.py [--steps 30] [--cpu-steps 5] [--px 128] [--repeat 3] [--quick] [--json FILE]
"""
import argparse, json, statistics, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))        # runnable from the repository root without installing


def frames(n: int, px: int):
    "n frames of px (cat, dog, empty in turn) as a uint8 tensor (n, 3, px, px) and their labels."
    import numpy as np, torch
    from mlops_nb.build.frames import CLASSES, make_frame
    x = np.stack([np.asarray(make_frame(CLASSES[i % 3], 0, i, px), np.uint8).transpose(2, 0, 1) for i in range(n)])
    return torch.from_numpy(x), torch.arange(n) % 3


def steps_per_s(device: str, precision: str, x, y, batch: int, steps: int, warmup: int) -> float:
    "Images per second over `steps` training steps of a fresh resnet18 on `device` at `precision`."
    import torch
    import torch.nn.functional as F
    from mlops_nb.build.model import Classifier
    torch.manual_seed(0)
    net = Classifier("resnet18", 3, 3).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "16-mixed" and device == "cuda")
    xs, ys = x.to(device), y.to(device)
    n = len(xs)
    def step(i):
        k = (i * batch) % max(1, n - batch + 1)
        xb, yb = xs[k:k + batch].float(), ys[k:k + batch]
        with torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for i in range(warmup): step(i)
    sync(); t = time.perf_counter()
    for i in range(steps): step(warmup + i)
    sync()
    return steps * batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=512, help="frames drawn in memory (default: %(default)s)")
    ap.add_argument("--px", type=int, default=128, help="frame size (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps on the GPU (default: %(default)s)")
    ap.add_argument("--cpu-steps", type=int, default=5, help="timed steps on the CPU (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="timings of each figure (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="a few steps at 64 px: a smoke test of this script")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.quick: a.frames, a.px, a.steps, a.cpu_steps, a.warmup, a.repeat, a.batch = 64, 64, 3, 1, 1, 1, 16
    import torch
    from mlops_nb.build.train import device_name
    t = time.perf_counter(); x, y = frames(a.frames, a.px)
    print(f"{a.frames} frames of {a.px} px drawn in {time.perf_counter() - t:.1f} s; batch {a.batch}, resnet18 (random init), AdamW", flush=True)
    med = lambda dev, prec, steps: statistics.median(steps_per_s(dev, prec, x, y, a.batch, steps, a.warmup) for _ in range(a.repeat))
    d = {"quick": a.quick, "frames": a.frames, "px": a.px, "batch": a.batch, "steps": a.steps, "cpu_steps": a.cpu_steps, "repeat": a.repeat,
         "arch": "resnet18", "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "cpu_name": device_name("cpu")}
    d["cpu_images_s"] = med("cpu", "32", a.cpu_steps)
    print(f"CPU ({d['cpu_name']}, {d['cpu_threads']} threads), precision 32: {d['cpu_images_s']:,.1f} images/s", flush=True)
    if not torch.cuda.is_available():
        d["gpu"] = None
        print("GPU: skipped (torch sees no GPU here: torch.cuda.is_available() is False)", flush=True)
    else:
        g = {"name": device_name("gpu"), "cuda": torch.version.cuda, "images_s": {}}
        for prec in ("32", "bf16-mixed", "16-mixed"):
            if prec == "bf16-mixed" and not torch.cuda.is_bf16_supported(): g["images_s"][prec] = None; continue
            g["images_s"][prec] = med("cuda", prec, a.steps)
            print(f"GPU ({g['name']}), precision {prec}: {g['images_s'][prec]:,.1f} images/s "
                  f"({g['images_s'][prec] / d['cpu_images_s']:.1f}x the CPU)", flush=True)
        d["gpu"] = g
    if a.json: Path(a.json).write_text(json.dumps(d, indent=2))


if __name__ == "__main__":
    main()
