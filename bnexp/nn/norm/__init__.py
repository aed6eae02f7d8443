"""Normalization layers: one module per option of conf/bn/ (its `_target_`), importing no MXNet
at module level (bnexp/options.py says why), with the helpers they share."""
