"""mgml_tf against the official PyTorch code, on one CPU (README.md here): ``python -m tools.refcmp.timing``
drives the two workers, ``bash tools/refcmp/run_all.sh`` runs the comparisons."""
