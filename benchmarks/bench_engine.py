"""Engine benchmark: encode/decode latency (batch 1), throughput (batch 16), peak memory and
achieved GFLOP/s from the counted multiply-adds (Glow.multiply_adds).

    python benchmarks/bench_engine.py                          # default model + reference
    python benchmarks/bench_engine.py --configs paper --device cuda

Configurations: `default` (the shipped resources/models/mixture; skipped with a note when it
is not built), `reference` (128x128, L=4, K=8, width 128: the fixed configuration the targets
refer to) and `paper` (512x512, L=7, K=32, width 512: Shibata et al.; a GPU size). Random
ones get a random init and a data-dependent actnorm init, which is all timing needs.
Everything runs the fused inference path (eval mode, no autograd) in float32; --unfused times
the plain training layers instead, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glow_engine.device import describe, pick_device
from glow_engine.flow import Glow, GlowConfig
from glow_engine.modelfile import load_model
from glow_engine.resources import default_model_dir

MATMUL_N = 2048  # the float32 matrix product whose GFLOP/s is "peak"

RANDOM_CONFIGS = {
    "reference": GlowConfig(128, 4, 8, 128),
    "paper": GlowConfig(512, 7, 32, 512),
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def smooth_images(n: int, resolution: int, seed: int) -> torch.Tensor:
    """Model-scale test images with image-like structure (white noise is far outside any
    trained model's distribution, where float32 round trips lose ~10x more)."""
    coarse = torch.rand(n, 1, resolution // 8, resolution // 8,
                        generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, scale_factor=8, mode="bilinear") - 0.5


def build(name: str, device: torch.device) -> tuple[Glow | None, str]:
    """The flow for a configuration name, or None (and why) when it is unavailable."""
    if name == "default":
        path = default_model_dir("mixture")
        if not (path / "model.json").is_file():
            return None, f"default model not found at {path} (train it first); skipped"
        return load_model(path, device).flow, f"default ({path.name})"
    cfg = RANDOM_CONFIGS[name]
    torch.manual_seed(0)
    flow = Glow(cfg).to(device)
    flow.initialize_actnorm(smooth_images(16, cfg.resolution, seed=0).to(device))
    return flow.eval(), name


def once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_gflops() -> Callable[[], float]:
    """One timed MATMUL_N x MATMUL_N float32 product per call, as GFLOP/s (CPU)."""
    a = torch.randn(MATMUL_N, MATMUL_N)
    b = torch.randn(MATMUL_N, MATMUL_N)
    return lambda: 2 * MATMUL_N**3 / once(lambda: a @ b) / 1e9


def timed(fn: Callable[[], object], runs: int, device: torch.device) -> list[float]:
    """Wall seconds of each run, after two warm-up runs (which also fill the caches)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        fn()
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux, bytes on macOS; the process's peak so far (cumulative)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def bench(flow: Glow, device: torch.device, runs: int, batch: int, folded: bool = True) -> dict:
    res = flow.cfg.resolution
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    x = smooth_images(batch, res, seed=1).to(device)
    gflop = 2 * flow.multiply_adds() / 1e9
    out: dict = {"resolution": res, "levels": flow.cfg.levels, "depth": flow.cfg.depth,
                 "width": "/".join(map(str, flow.cfg.level_widths())),
                 "gflop_per_image": round(gflop, 3)}
    with torch.inference_mode():
        z = flow.encode(x, folded)
        out["round_trip_max_error"] = (flow.decode(z, folded) - x).abs().max().item()
        for name, fn, arg in (("encode", flow.encode, x), ("decode", flow.decode, z)):
            one = timed(lambda fn=fn, arg=arg: fn(arg[:1], folded), runs, device)
            many = timed(lambda fn=fn, arg=arg: fn(arg, folded), max(3, runs // 5), device)
            median_one, median_many = statistics.median(one), statistics.median(many)
            out[name] = {
                "latency_ms_median": round(1e3 * median_one, 2),
                "latency_ms_p10": round(1e3 * sorted(one)[len(one) // 10], 2),
                "latency_ms_p90": round(1e3 * sorted(one)[(9 * len(one)) // 10], 2),
                f"throughput_img_s_batch{batch}": round(batch / median_many, 2),
                "gflop_s_batch1": round(gflop / median_one, 1),
                f"gflop_s_batch{batch}": round(gflop * batch / median_many, 1),
            }
    out["peak_memory_mib"] = round(peak_memory_mib(device), 1)
    return out


def bench_levels(flow: Glow, runs: int) -> list[dict]:
    """Batch-1 decode time of each level (CPU), in rounds that interleave the levels with the
    matrix product, so each level's share of the peak is measured under the same conditions."""
    z = flow.encode(smooth_images(1, flow.cfg.resolution, seed=1))
    parts = [z[:, s].reshape(-1, *shape)
             for s, shape in zip(flow.level_slices(), flow.eps_shapes, strict=True)]
    path, peak = flow._path(True), matmul_gflops()
    inputs, x = [], None  # each level's input: the coarser level's output
    for level, part in zip(reversed(flow.levels), reversed(parts), strict=True):
        inputs.append(x)
        x = level.reverse(x, part, path)
    cases = list(zip(reversed(flow.levels), reversed(parts), inputs, strict=True))
    times: list[list[float]] = [[] for _ in cases]
    peaks = []
    for _ in range(runs):
        peaks.append(peak())
        for i, (level, part, kept) in enumerate(cases):
            times[i].append(once(lambda lv=level, p=part, k=kept: lv.reverse(k, p, path)))
    peak_median = statistics.median(peaks)
    out = []
    for i, mac in enumerate(reversed(flow.level_multiply_adds())):
        seconds = statistics.median(times[i])
        gflops = 2 * mac / 1e9 / seconds
        out.append({"level": len(cases) - i, "ms": round(1e3 * seconds, 2),
                    "gflop": round(2 * mac / 1e9, 3), "gflop_s": round(gflops, 1),
                    "of_peak": round(gflops / peak_median, 3),
                    "matmul_gflop_s": round(peak_median, 1)})
    return out[::-1]


def report_levels(rows: list[dict]) -> str:
    lines = [f"  decode batch 1 by level (matrix product {rows[0]['matmul_gflop_s']} GFLOP/s, "
             "median of interleaved rounds):"]
    lines += [f"    level {r['level']}: {r['ms']} ms, {r['gflop']} GFLOP, {r['gflop_s']} GFLOP/s "
              f"= {100 * r['of_peak']:.0f}% of peak" for r in rows]
    return "\n".join(lines)


def report(label: str, r: dict, batch: int, device: torch.device) -> str:
    memory = "peak GPU memory allocated" if device.type == "cuda" else "peak RSS of the process"
    lines = [f"{label}: {r['resolution']}x{r['resolution']}, L={r['levels']}, K={r['depth']}, "
             f"width {r['width']}; {r['gflop_per_image']} GFLOP per image; round-trip max "
             f"error {r['round_trip_max_error']:.2e}; {memory} {r['peak_memory_mib']} MiB"]
    for name in ("encode", "decode"):
        s = r[name]
        lines.append(
            f"  {name}: batch 1 median {s['latency_ms_median']} ms (p10 {s['latency_ms_p10']}, "
            f"p90 {s['latency_ms_p90']}), {s['gflop_s_batch1']} GFLOP/s | batch {batch} "
            f"{s[f'throughput_img_s_batch{batch}']} img/s, {s[f'gflop_s_batch{batch}']} GFLOP/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="default,reference",
                   help="comma-separated: default, reference, paper")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--runs", type=int, default=30, help="batch-1 runs per measurement (>= 20)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--levels", action="store_true",
                   help="also time each level of a batch-1 decode beside the matrix product (CPU)")
    p.add_argument("--unfused", action="store_true",
                   help="time the plain training layers instead (model in channels_last), "
                        "to compare with the fused inference path")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    header = {"torch": torch.__version__, "device": describe(device), "cpu": cpu_name(),
              "threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
              "runs": args.runs, "path": "unfused" if args.unfused else "fused"}
    print(" | ".join(f"{k} {v}" for k, v in header.items()), flush=True)
    results = {"machine": header}
    for name in args.configs.split(","):
        flow, label = build(name.strip(), device)
        if flow is None:
            print(f"note: {label}", flush=True)
            continue
        if args.unfused:
            flow.to(memory_format=torch.channels_last)  # the layout training uses
        results[name] = bench(flow, device, args.runs, args.batch, folded=not args.unfused)
        print(report(label, results[name], args.batch, device), flush=True)
        if args.levels and device.type == "cpu" and not args.unfused:
            with torch.inference_mode():
                results[name]["decode_levels"] = bench_levels(flow, args.runs)
            print(report_levels(results[name]["decode_levels"]), flush=True)
        del flow
    results["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {results['machine']['load_average_1min_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
