"""A TascProposer whose every third ``propose`` call raises, for the engine test of failure
handling (the production class has no fault hook: this subclass is the test's)."""

from tasc_vllm.proposer import TascProposer


class FaultyProposer(TascProposer):
    EVERY = 3

    def _propose(self, *args):
        if (self.stats["calls"] + 1) % self.EVERY == 0:
            raise RuntimeError("injected test fault")
        return super()._propose(*args)
