"""Hydra configuration of bnexp (a package so that `pkg://bnexp.conf` finds it in a wheel)."""
