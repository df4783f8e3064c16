"""`dpglow info MODEL [--json]`: a model file's metadata, once the model has loaded."""

from __future__ import annotations

import argparse
import json

from glow_engine.modelfile import load_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory or .safetensors file")
    p.add_argument("--json", action="store_true", help="print the full metadata as JSON")


def summary(meta: dict) -> str:
    arch, tr = meta.get("architecture", {}), meta.get("training", {})
    val, cal = meta.get("validation", {}), meta.get("calibration")
    res = arch.get("resolution")
    lines = [
        f"model       {meta.get('name', '?')}  (sha256 {meta.get('sha256', '')[:16]}…)",
        f"resolution  {res}x{res}, 1 channel, 8-bit input",
        f"flow        L={arch.get('levels')} levels, K={arch.get('depth')} steps, "
        f"width {arch.get('widths') or arch.get('width')}, "
        f"coupling log-scale bound ±{arch.get('scale_bound')}",
        f"training    {tr.get('data')}; {tr.get('images')} images, label filter "
        f"{tr.get('label_filter')}, {tr.get('steps')} steps, {tr.get('epochs')} epochs, "
        f"{tr.get('elapsed_minutes')} min",
        f"validation  bits/dim {val.get('bpd')}",
    ]
    if cal:
        lines.append(f"calibration {cal.get('images')} images ({cal.get('data')}); "
                     f"mean Delta {cal.get('delta_mean', 0):.3f}, "
                     f"bits/dim p99.5 {cal.get('bpd_p995', 0):.3f}")
    else:
        lines.append("calibration none (run `dpglow calibrate` before privatising)")
    if box := meta.get("fitted_box"):
        rows = ", ".join(f"{r['e_px']}: {'/'.join(f'{q:g}' for q in r['quantiles'])}"
                         for r in box.get("rows", []))
        lines.append(f"fitted box  quantiles per level (finest first) by e_px: {rows}; fitted "
                     f"on {box.get('images')} images")
    else:
        lines.append("fitted box  none (fitted mode needs `dpglow fit-box`)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # Loaded, not only read: what cannot load (a wrong width, non-finite weights or a broken
    # calibration) is an error here too, not a summary of metadata that looks fine.
    meta = load_model(args.model).meta
    print(json.dumps(meta, indent=2, sort_keys=True) if args.json else summary(meta))
    return 0
