"""MELTR inside other training frameworks, each an optional extra imported on its own.

* :mod:`meltr.integrations.hf`: ``MeltrTrainer``, a ``transformers.Trainer`` (``pip install meltr[hf]``).
* :mod:`meltr.integrations.lightning`: PyTorch Lightning (``pip install meltr[lightning]``).

``import meltr`` imports neither; importing one of these modules imports its framework.
"""
