"""Layers and losses shared by the backbones (BERT blocks, contrastive and masked-modelling losses)."""
