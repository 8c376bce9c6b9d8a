"""benchmarks.verify_cost: the fixed-length drafter, the line fitted to step times, and the
report section (the engine measurement itself is a benchmark, not a test)."""

from types import SimpleNamespace

import pytest

from benchmarks.harness.fixed_drafts import LENGTH_FILE_ENV, TOKEN_ENV, FixedDrafts
from benchmarks.sections.verify_cost import section
from benchmarks.verify_cost import fit_knee, fit_line, summarize


def _config(k=8, vocab=100):
    return SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=k),
                           model_config=SimpleNamespace(get_vocab_size=lambda: vocab))


def test_the_drafter_proposes_the_length_in_its_file_for_decoding_rows_only(tmp_path, monkeypatch):
    length = tmp_path / "L"
    length.write_text("3")
    monkeypatch.setenv(LENGTH_FILE_ENV, str(length))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    d = FixedDrafts(_config(k=8, vocab=100))
    assert d.propose([[5], [], [7, 8]], None, None) == [[99, 99, 99], [], [99, 99, 99]]
    length.write_text("20")  # read every step, capped at k
    assert d.propose([[5]], None, None) == [[99] * 8]
    length.write_text("0")
    assert d.propose([[5]], None, None) == [[]]
    monkeypatch.setenv(TOKEN_ENV, "42")
    length.write_text("5")
    assert FixedDrafts(_config(k=2)).propose([[1]], None, None) == [[42, 42]]


def test_the_drafter_needs_its_length_file(monkeypatch):
    monkeypatch.delenv(LENGTH_FILE_ENV, raising=False)
    with pytest.raises(RuntimeError, match=LENGTH_FILE_ENV):
        FixedDrafts(_config())


def test_the_line_recovers_the_costs_that_made_the_points():
    lengths = [0, 1, 2, 4, 8, 16]
    step, per_token = fit_line(lengths, [45.0 + 2.5 * L for L in lengths])
    assert (step, per_token) == pytest.approx((45.0, 2.5))
    with pytest.raises(ValueError, match="two different"):
        fit_line([4, 4], [50.0, 51.0])


def test_the_knee_recovers_where_a_flat_step_starts_to_grow():
    lengths = [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16]
    assert fit_knee(lengths, [38.0 + 2.5 * max(0, L - 5) for L in lengths]) == pytest.approx((5, 38.0, 2.5))
    # a straight line has its knee at the shortest length
    assert fit_knee(lengths, [40.0 + 2.0 * L for L in lengths]) == pytest.approx((0, 40.0, 2.0))
    with pytest.raises(ValueError, match="two different"):
        fit_knee([3, 3], [1.0, 2.0])


def test_summary_and_section_per_batch_size():
    points = [{"repeat": r, "batch_size": b, "length": L, "ms_per_step": (45.0 if b == 1 else 300.0) + L * b * (1 + r)}
              for r in (0, 1) for b in (1, 16) for L in (0, 4, 16)]
    summary = summarize(points)
    assert [s["batch_size"] for s in summary] == [1, 16]
    one, sixteen = summary
    assert one["median_ms_per_step"] == {"0": 45.0, "4": 51.0, "16": 69.0}  # median of the two repeats
    assert one["fit_ms_per_drafted_token"] == pytest.approx(1.5)
    assert sixteen["fit_ms_per_drafted_token_per_row"] == pytest.approx(1.5)
    assert sixteen["relative_to_no_draft"]["16"] == pytest.approx((300 + 16 * 16 * 1.5) / 300)
    res = {"settings": {"task": "bfcl", "prompts": 16, "tokens": 96, "lengths": [0, 4, 16], "batches": [1, 16],
                        "repeats": 2, "dtype": "bfloat16", "engines": "eager"},
           "machine": {"cores": 2, "cpu": "cpu"}, "seconds": 600.0, "summary": summary}
    text = "\n".join(section("verify-cost.json", res))
    assert "| 1 | 45.0 | 51.0 | 69.0 | 45.0 ms + 1.50 ms x L | 45.0 ms up to L=0, then 1.50 ms |" in text
    assert "![verify-cost.png](results/verify-cost.png)" in text
