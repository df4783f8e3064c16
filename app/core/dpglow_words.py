"""DP-GLOW's choices in the window's words: the noise rule's and the decoding's titles and
tooltips, the clip width's, and what the noise rule on screen does at the budget shown.
Qt-free: the side panel and the folder release window both take their words here.
"""

from __future__ import annotations

from glow_engine.budget import format_e_px
from glow_engine.choices import DEFAULT_ALPHA
from glow_engine.fitted_box import FittedBoxes

# The published rule: where the fitted box is not available, the noise rule falls back to it.
PUBLISHED_MODE = "paper"

MODE_LABELS = {"paper": "as published (paper)", "tight": "tight: less noise, same ε",
               "fitted": "fitted box, chosen per budget"}
MODE_TIP = ("Sensitivity S of the Laplace noise b = S / e_px in the latent space.\n"
            "paper: S = Δ, the calibrated latent range, as published.\n"
            "tight: S = w = α·Δ, the clip box's width: a valid sensitivity bound that uses "
            "1/α times less noise for the same ε.\n"
            "fitted box: the clip box is fitted per budget on the model's training latents "
            "(per latent level, the range between two quantiles, chosen for the clearest "
            "picture at that budget on training images); S = the box's width, so the "
            "guarantee is the same e_px. The box depends on the model and the budget only, "
            "never on the image released: it is public, like the published box. α is not used.")
# The fitted entry's tooltip where the model cannot offer it.
NO_FITTED_BOX = ("Not available: the model file holds no fitted clip box (one is fitted on "
                 "the model's training images and stored in the model file).")
# The status bar's note when a model without a fitted box arrives while it is chosen.
FELL_BACK = (f"This model file holds no fitted clip box, so the Noise rule is now "
             f"“{MODE_LABELS[PUBLISHED_MODE]}”.")

ALPHA_TIP = f"Clip width w = α·Δ of the latent box (paper: {DEFAULT_ALPHA:g})"
ALPHA_UNUSED = ("Not used by the fitted box: its width is fitted per budget on the model's "
                "training images (see the Noise rule).")

ESTIMATE_LABELS = {"plain": "As released (published)",
                   "posterior-mean": "Posterior mean (post-processing, no privacy cost)"}
ESTIMATE_TIP = ("What DP-GLOW's picture is decoded from. As released: the released latent, as "
                "published.\n"
                "Posterior mean: the mean of the original latent given the released one, "
                "computed from the release and public facts only (the model, its clip box, the "
                "noise scale): post-processing, it costs no privacy and ε is unchanged.\n"
                "It applies where the noise is small against the clip box (b_k ≤ w_k/40: "
                "paper mode from e_px 40/α, 100 at α 0.4; tight and fitted modes from e_px "
                "40); below that the released latent is decoded as published.")


def rule_text(mode: str, alpha: float, e_px: float, boxes: FittedBoxes | None) -> str:
    """What the noise rule `mode` clips and adds at this budget: for the fitted box, which of
    the model's boxes applies (FittedBox.describe)."""
    if mode == "paper":
        return (f"Clip box c ± α·Δ/2, α = {alpha:.2f} of the training latents' range Δ; "
                "noise S = Δ, as published.")
    if mode == "tight":
        return (f"Clip box c ± α·Δ/2, α = {alpha:.2f} of the training latents' range Δ; "
                f"noise S = α·Δ: {1 / alpha:.3g}× less noise than published, the same ε.")
    if boxes is None:
        return "Fitted box: the model's box for the budget (no model with one is loaded)."
    said = boxes.for_budget(e_px).describe()
    return (f"{said[0].upper()}{said[1:]} (at ε per pixel {format_e_px(e_px)}); noise S = "
            "its width, the same ε.")
