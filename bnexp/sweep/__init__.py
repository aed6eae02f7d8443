"""Hydra's side of sweeps: the callbacks Hydra calls, and the naming of job folders."""
