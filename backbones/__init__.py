"""Backbones that implement :class:`meltr.interface.MultiLossModel` (used from a clone, not shipped in the wheel)."""
