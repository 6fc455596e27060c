"""The retrieval engine: pure Python/NumPy/torch, no Qt and no devices.

Submodules are imported on use so that parser worker processes stay light (no torch).
"""
