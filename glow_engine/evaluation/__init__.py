"""`dpglow evaluate`: utility (AUC, SSIM, PSNR), re-identification and marker/flip checks of the
privacy mechanisms on a labelled image set, with a Markdown report and plots.

Modules: metrics (AUC + bootstrap, SSIM, PSNR), reid (attackers and ranks), checks (marker and
flip), settings (which mechanisms and budgets), runner (the loop, cache), report (JSON, Markdown),
plots (PNG figures).
"""
