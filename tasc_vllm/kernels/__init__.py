"""The compiled hot path (Numba): the n-gram table and its lookups, drafting, calibration and
learning while serving. Parameters travel as the named tuples of :mod:`tasc_vllm.kernels.params`."""
