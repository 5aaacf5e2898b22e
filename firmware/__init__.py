"""OpenRDU firmware: numerics reference, compiler, runtime, kernels."""
