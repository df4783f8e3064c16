"""This engine's decode and encode beside a public GLOW at equal configuration, and both
beside the machine's float32 matrix-product peak, measured in the same process.

    python benchmarks/bench_vs_public_glow.py --public PATH [--threads 2] [--rounds 15]

PATH is a checkout of rosinality/glow-pytorch (its model.py is imported from there; nothing
of it is copied into this project). Its coupling width is fixed at 512 in its Flow class, so
each of its couplings is rebuilt with its own AffineCoupling class at the width of the level
being compared. Both flows get random weights and a data-dependent actnorm init, which is all
timing needs. Configurations: `reference` (128x128, L=4, K=8, width 128: the fixed
configuration of the targets) and `default256` (the shipped 256x256 architecture: L=5, K=8,
widths 32, 96, 160, 192, 256).

Rounds interleave everything measured (matrix product, this engine, the public GLOW, at
batch 1 and batch 16), so a noisy moment on a shared machine hits all of them alike; the
figures are medians over rounds. "of peak" is achieved GFLOP/s (counted multiply-adds of the
convolutions and 1x1 mixing, x2) over the matrix product's GFLOP/s in the same rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_engine import cpu_name, matmul_gflops, once, smooth_images
from glow_engine.flow import Glow, GlowConfig

CONFIGS = {
    "reference": GlowConfig(128, 4, 8, 128),
    "default256": GlowConfig(256, 5, 8, 128, widths=(32, 96, 160, 192, 256)),
}


def import_public(path: Path):
    model_py = path / "model.py"
    if not model_py.is_file():
        raise SystemExit(f"error: {model_py} not found (pass a rosinality/glow-pytorch checkout)")
    spec = importlib.util.spec_from_file_location("public_glow_model", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def public_flow(module, cfg: GlowConfig, x: torch.Tensor):
    """The public GLOW at cfg's levels, depth and per-level widths (1 input channel)."""
    torch.manual_seed(0)
    net = module.Glow(1, cfg.depth, cfg.levels, affine=True, conv_lu=True)
    for block, width in zip(net.blocks, cfg.level_widths(), strict=True):
        for flow in block.flows:
            channels = flow.actnorm.loc.shape[1]
            flow.coupling = module.AffineCoupling(channels, filter_size=width, affine=True)
    with torch.no_grad():
        net(x)  # its actnorms initialise on the first forward
    return net.eval()


def our_flow(cfg: GlowConfig, x: torch.Tensor) -> Glow:
    torch.manual_seed(0)
    flow = Glow(cfg)
    flow.initialize_actnorm(x)
    return flow.eval()


def measure(cfg_name: str, module, rounds: int, batch: int) -> dict:
    cfg = CONFIGS[cfg_name]
    x = smooth_images(batch, cfg.resolution, seed=1)
    ours, theirs = our_flow(cfg, smooth_images(16, cfg.resolution, 0)), None
    theirs = public_flow(module, cfg, smooth_images(16, cfg.resolution, 0))
    gflop = 2 * ours.multiply_adds() / 1e9
    with torch.inference_mode():
        z_ours = ours.encode(x)
        z_theirs = theirs(x)[2]
        err = (ours.decode(z_ours) - x).abs().max().item()
        one, many = (lambda t: [z[:1] for z in t]), (lambda t: t)
        cases: dict[str, Callable[[], object]] = {
            "ours decode b1": lambda: ours.decode(z_ours[:1]),
            "public decode b1": lambda: theirs.reverse(one(z_theirs), reconstruct=True),
            "ours encode b1": lambda: ours.encode(x[:1]),
            "public encode b1": lambda: theirs(x[:1]),
            f"ours decode b{batch}": lambda: ours.decode(z_ours),
            f"public decode b{batch}": lambda: theirs.reverse(many(z_theirs), reconstruct=True),
        }
        peak = matmul_gflops()
        for fn in cases.values():  # warm-up (fills our folded-weight caches)
            fn()
            fn()
        times: dict[str, list[float]] = {k: [] for k in cases}
        peaks: list[float] = []
        for _ in range(rounds):
            peaks.append(peak())
            for name, fn in cases.items():
                times[name].append(once(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"config": cfg_name, "gflop_per_image": gflop, "round_trip": err,
            "matmul_gflops": statistics.median(peaks), "median_s": med, "batch": batch}


def report(r: dict) -> str:
    peak, med, b = r["matmul_gflops"], r["median_s"], r["batch"]
    lines = [f"{r['config']}: {r['gflop_per_image']:.2f} GFLOP/image, matrix product "
             f"{peak:.0f} GFLOP/s (median), our round trip {r['round_trip']:.1e}"]
    for what, n in (("decode b1", 1), ("encode b1", 1), (f"decode b{b}", b)):
        ours, theirs = med[f"ours {what}"], med[f"public {what}"]
        achieved = r["gflop_per_image"] * n / ours
        lines.append(f"  {what}: ours {1e3 * ours:.1f} ms ({achieved:.0f} GFLOP/s, "
                     f"{100 * achieved / peak:.0f}% of peak), public {1e3 * theirs:.1f} ms; "
                     f"ratio {ours / theirs:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--public", type=Path, required=True,
                   help="a rosinality/glow-pytorch checkout (its model.py is imported)")
    p.add_argument("--configs", default="reference,default256")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    module = import_public(args.public)
    print(f"torch {torch.__version__} | {cpu_name()} | threads {torch.get_num_threads()} | "
          f"load {os.getloadavg()[0]:.2f} | rounds {args.rounds}", flush=True)
    for name in args.configs.split(","):
        print(report(measure(name.strip(), module, args.rounds, args.batch)), flush=True)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
