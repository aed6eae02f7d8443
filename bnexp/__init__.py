"""bnexp: Hydra-configured batch-normalization experiments on Apache MXNet.

Importing bnexp changes nothing: MXNet is imported, with its thread count, by the entry
points through bnexp.runtime.mxnet_import.
"""
