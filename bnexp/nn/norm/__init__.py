"""Normalization layers, one module each, registered by name (registry.py)."""
