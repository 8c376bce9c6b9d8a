"""benchmarks.harness.step_cost: the engine's step costs fitted to measured runs, and the counts of
perfect drafts."""

import pytest

from benchmarks.harness.step_cost import fit_step_cost, perfect_drafts


def _run(seconds, tokens, drafted=0, accepted=0, batch=1, method="x"):
    metrics = {"num_draft_tokens": drafted, "num_accepted_tokens": accepted} if drafted else {}
    return {"method": method, "batch_size": batch, "seconds": seconds, "output_tokens": tokens,
            "spec_metrics": metrics}


def _priced(prefill, step, per_draft, tokens, drafted, accepted, batch=1):
    return _run(prefill + step * (tokens - accepted) / batch + per_draft * drafted, tokens, drafted, accepted, batch)


@pytest.mark.parametrize("batch", [1, 16])
def test_the_fit_recovers_the_costs_that_made_the_runs(batch):
    runs = [_priced(12.0, 0.035, 0.002, 7000, d, a, batch) for d, a in [(0, 0), (9000, 4000), (11000, 5000), (6700, 6600)]]
    cost = fit_step_cost(runs)
    assert (cost.prefill, cost.step, cost.draft_token) == pytest.approx((12.0, 0.035, 0.002), rel=1e-6)
    assert cost.worst_error < 1e-9 and cost.runs == 4 and cost.batch_size == batch
    # plain decoding's time over a run's: steps cut to a third, drafted tokens paid for
    assert cost.speedup(7000, 7000, 0) == pytest.approx(1.0)
    assert cost.speedup(7000, 2000, 5000) == pytest.approx((12 + 0.035 * 7000 / batch) / (12 + 0.035 * 2000 / batch + 10))


def test_runs_that_cannot_separate_the_terms_are_refused():
    plain, spec = _run(250.0, 7000), _run(110.0, 7000, 9000, 4000)
    with pytest.raises(ValueError, match="plain decoding and two speculative runs"):
        fit_step_cost([plain, spec])
    with pytest.raises(ValueError, match="plain decoding and two speculative runs"):
        fit_step_cost([spec, _run(100.0, 7000, 8000, 4500), _run(90.0, 7000, 7000, 5000)])  # no plain run
    with pytest.raises(ValueError, match="one batch size"):
        fit_step_cost([plain, spec, dict(_run(60.0, 7000, 8000, 4000), batch_size=16)])
    with pytest.raises(ValueError, match="negative term"):  # more drafted tokens, less time: not this model
        fit_step_cost([plain, _run(200.0, 7000, 1000, 500), _run(50.0, 7000, 20000, 600)])


def test_perfect_drafts_stop_before_the_first_position_no_candidate_has():
    # answer of 1 + 8 tokens; a candidate was right at positions 1-3 and 5-8, not at 4
    got = perfect_drafts([[True, True, True, False, True, True, True, True]], k=16)
    # prefill (1 token); step: 3 drafted + the model's 4th; step: the last 4 drafted
    assert got == {"tokens": 9, "steps": 3, "drafted": 7, "accepted": 7}
    capped = perfect_drafts([[True] * 8], k=3)  # the oracle with k=3: 3 drafted + 1 per step
    assert capped == {"tokens": 9, "steps": 3, "drafted": 6, "accepted": 6}
    assert perfect_drafts([[False] * 4], k=8) == {"tokens": 5, "steps": 5, "drafted": 0, "accepted": 0}
