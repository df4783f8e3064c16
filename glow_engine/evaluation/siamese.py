"""The learned re-identification attacker: a siamese verification network (Packhäuser et al.,
Sci. Rep. 2022, adapted to our data size) that decides whether two chest X-rays show the same
patient.

The correlation attackers of evaluation.reid look for a released image's *own* original. The
attack that matters in practice links a released image to *another* image of the same patient,
e.g. a prior study. Two shared-weight branches (evaluation.cnn's backbone) embed both images;
a linear layer on the absolute difference of the embeddings gives the logit "same patient".
Trained only on same-patient pairs of the *training* split (plus as many random
different-patient pairs, drawn afresh each epoch), with augmentation on both sides; applied to
every pair of val images. Two variants, as in PriCheXy-Net: trained on originals, and retrained
with the query side privatised by the mechanism under test (the attacker who knows the
mechanism and has privatised images of known patients); evaluation.learned trains both as
continuations of one base network, for equal epochs.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from glow_engine.evaluation import cnn

__all__ = ["Verifier", "same_patient_pairs", "similarity", "train_verifier"]


class Verifier(cnn.Network):
    """One backbone for both sides; the logit "same patient" of their features' distance."""

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Embeddings (P, F) of the two sides -> (P,) logits."""
        return self.logit((a - b).abs())


def same_patient_pairs(patient_ids: np.ndarray) -> np.ndarray:
    """(P, 2) index pairs i < j of different images of one (known) patient."""
    pids = np.asarray(patient_ids).astype(str)
    i, j = np.nonzero(np.triu(pids[:, None] == pids[None, :], k=1))
    keep = pids[i] != ""
    return np.stack([i[keep], j[keep]], axis=1)


def _epoch_pairs(positives: torch.Tensor, pids: np.ndarray,
                 gen: torch.Generator) -> torch.Tensor:
    """(2P, 3) rows (a, b, same): the positives in random order and orientation, and as many
    fresh random different-patient pairs, shuffled."""
    n, p = len(pids), len(positives)
    swap = torch.rand(p, generator=gen) < 0.5
    pos = torch.where(swap[:, None], positives.flip(1), positives)
    a, b = torch.randint(n, (4 * p,), generator=gen), torch.randint(n, (4 * p,), generator=gen)
    differ = torch.from_numpy(pids[a.numpy()] != pids[b.numpy()])
    neg = torch.stack([a[differ], b[differ]], 1)[:p]
    rows = torch.cat([torch.cat([pos, torch.ones(p, 1, dtype=torch.long)], 1),
                      torch.cat([neg, torch.zeros(len(neg), 1, dtype=torch.long)], 1)])
    return rows[torch.randperm(len(rows), generator=gen)]


def train_verifier(gallery: np.ndarray, patient_ids: np.ndarray, seed: int,
                   recipe: cnn.Recipe, queries: np.ndarray | None = None,
                   init: Verifier | None = None) -> Verifier:
    """Trained on the same-patient pairs of (training) images `gallery` (N, R, R); with
    `queries` (the same images privatised, same order) the first side of every pair is
    taken from them: the retrained variant, fine-tuned from `init` where given."""
    pids = np.asarray(patient_ids).astype(str)
    positives = torch.from_numpy(same_patient_pairs(pids))
    if not len(positives) or len(np.unique(pids)) < 2:
        raise ValueError("the verification attacker needs patients with several images")
    g = cnn.to_input(gallery, recipe.input)
    q = g if queries is None else cnn.to_input(queries, recipe.input)
    model = copy.deepcopy(init) if init is not None else \
        cnn.build(lambda: Verifier(recipe.input), seed)

    def loss(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        both = torch.cat([q[rows[:, 0]], g[rows[:, 1]]])  # one batch: shared batch statistics
        emb = model.backbone(cnn.train_view(both, gen, recipe))
        logits = model.pair_logits(emb[:len(rows)], emb[len(rows):])
        return F.binary_cross_entropy_with_logits(logits, rows[:, 2].float())

    return cnn.fit(model, recipe, seed, lambda gen: _epoch_pairs(positives, pids, gen), loss)


def similarity(model: Verifier, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(Q, G) logits "same patient" for every query x gallery pair."""
    eq = cnn.apply(model.backbone, cnn.to_input(queries, model.size))
    eg = cnn.apply(model.backbone, cnn.to_input(gallery, model.size))
    with torch.inference_mode():
        rows = [model.pair_logits(e.expand_as(eg), eg) for e in eq]
    return torch.stack(rows).double().numpy()
