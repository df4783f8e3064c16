"""What the out-of-distribution check finds on an evaluation's privatised images, per budget.

    python scripts/ood_findings.py MIXTURE NORMAL CACHE_DIR [--mechanisms ...] [--epx ...]

CACHE_DIR is the `cache` folder of a `dpglow evaluate` run, which keeps each setting's
privatised images as `<mechanism>__<budget>.images.npz` (8-bit; budgets missing there are
skipped). Prints, per mechanism and
budget, how many images the check flags, how often each finding occurs (an image can have
several) and the median bits/dim under M: why the flagged share need not fall or rise
steadily with the budget.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from glow_engine.anomaly import AnomalyScorer
from glow_engine.evaluation.settings import parse_settings
from glow_engine.modelfile import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mixture")
    p.add_argument("normal")
    p.add_argument("cache", type=Path)
    p.add_argument("--mechanisms", default="dpglow-paper,dpglow-tight")
    p.add_argument("--epx", default="inf-noclip,inf,1000,100,10,1,0.1")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scorer = AnomalyScorer(load_model(args.normal), load_model(args.mixture))
    for mechanism in args.mechanisms.split(","):
        for setting in parse_settings(args.epx):
            path = args.cache / f"{mechanism}__{setting.key}.images.npz"
            if not path.is_file():
                continue
            with np.load(path) as npz:
                pixels = npz["images"].astype(np.float32) / 255
            scores = scorer.score(pixels, np.zeros(len(pixels), bool))
            findings = Counter(r.value for s in scores for r in s.ood_reasons)
            flagged = sum(s.out_of_distribution for s in scores)
            bpd = float(np.median([s.bpd_mixture for s in scores]))
            print(f"{mechanism} e_px {setting.label}: flagged {flagged} / {len(scores)}; findings "
                  f"{dict(findings)}; median bits/dim {bpd:.3g}", flush=True)


if __name__ == "__main__":
    main()
