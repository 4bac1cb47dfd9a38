"""Training: baselines, the tiny encoder, MiniLM fine-tuning, threshold, gate and bundles.

Needs the `train` extra (torch, transformers, scikit-learn): pip install 'intakegate[train]'.
"""
