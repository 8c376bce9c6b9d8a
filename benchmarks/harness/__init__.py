"""What the benchmark scripts share: the results folder (:mod:`.paths`), the machine's
description (:mod:`.machine`), the speculation methods and TASC-spec variants
(:mod:`.methods`), the own-output index (:mod:`.own_outputs`), a ``vllm serve`` on loopback
(:mod:`.server`), the engine-free replay of TASC-spec (:mod:`.replay`), the engine's step
costs (:mod:`.step_cost`), the widest n-gram candidate sets (:mod:`.followers`), the
drafting ceilings built on them (:mod:`.ceilings`) and the fixed-length drafter that
measures verification cost (:mod:`.fixed_drafts`).

The harness imports no script (``benchmarks.run``, ``benchmarks.online``, ...) and no report
module, so every script and :mod:`benchmarks.report` can import it without a cycle.
"""
