"""`dpglow evaluate`: utility (AUC, SSIM, PSNR), re-identification and marker/flip checks of the
privacy mechanisms on a labelled image set, with a Markdown report and plots.

Modules: metrics (AUC + bootstrap, SSIM, PSNR), reid (attackers, ranks, verification AUC),
checks (marker and flip), baselines (compressors, view), settings (which mechanisms and budgets),
runner (the loop, cache), learned (the networks trained on the training split: cnn, downstream,
siamese), report (JSON, Markdown), plots (PNG figures), examples (image grids).
"""
