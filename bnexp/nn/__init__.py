"""The network: normalization layers (norm/), pooling, the models, and building them."""
