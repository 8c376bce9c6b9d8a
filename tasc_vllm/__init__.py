"""tasc-vllm: Task-Adaptive Sequence Compression for vLLM.

``tasc_vllm.TascProposer`` is the speculative proposer (``custom_class``); it is imported
lazily so that vLLM's plugin loading of this package stays fast.
"""

__version__ = "0.1.0"
__all__ = ["TascProposer", "__version__"]


def __getattr__(name):
    if name == "TascProposer":
        from tasc_vllm.proposer import TascProposer

        return TascProposer
    raise AttributeError(f"module 'tasc_vllm' has no attribute {name!r}")
