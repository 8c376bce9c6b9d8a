"""The step-time model kept between engines: a timer resumes from an earlier fit, its own steps
soon outweigh it, and the file is keyed by what sets a step's time."""

from types import SimpleNamespace

import numpy as np
import pytest

from tasc_vllm.errors import TascError
from tasc_vllm.step_time_store import StepTimeStore, engine_key
from tasc_vllm.step_timing import MIN_SAMPLES, RESUMED_WEIGHT, StepTimer, bucket


def engine_config(model="/models/tuned", dtype="torch.bfloat16", eager=True):
    return SimpleNamespace(
        speculative_config=SimpleNamespace(num_speculative_tokens=16),
        model_config=SimpleNamespace(model=model, dtype=dtype, enforce_eager=eager, revision=None,
                                     max_model_len=512, get_vocab_size=lambda: 49152),
        parallel_config=SimpleNamespace(tensor_parallel_size=1, pipeline_parallel_size=1),
        scheduler_config=SimpleNamespace(max_num_seqs=16),
    )


def timed(timer, steps, fixed, per_token, knee, rows=(1, 16), seed=0, per_row=0.0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        r = int(rng.choice(rows))
        tokens = r + int(rng.integers(0, 4 * r + 8))
        seconds = fixed + per_row * r + per_token * max(0, tokens - knee)
        timer.record(r, tokens, seconds * rng.uniform(0.98, 1.02))
    return timer


def test_a_timer_resumes_an_earlier_fit_and_its_own_steps_soon_outweigh_it():
    earlier = timed(StepTimer(), 500, 0.040, 0.002, 8)
    resumed = StepTimer()
    assert resumed.resume(earlier.state())
    assert resumed.measured and resumed.resumed_samples == earlier.samples and resumed.fresh_samples == 0
    for rows in (1, 16):
        assert np.allclose(resumed.cost(rows), earlier.cost(rows), rtol=0.05)
        assert resumed.state()["xtx"][bucket(rows), 0, 0, 0] == pytest.approx(RESUMED_WEIGHT)  # scaled to 48 steps
    assert "resumed from 500 earlier steps" in resumed.summary()
    # this engine's steps are twice as slow: within a few multiples of the resumed weight, its own fit holds
    timed(resumed, 16 * int(RESUMED_WEIGHT), 0.080, 0.004, 8, seed=1)
    for rows in (1, 16):
        assert resumed.predict(rows, rows + 20) == pytest.approx(0.080 + 0.004 * (rows + 12), rel=0.1)


def test_a_timer_refuses_sums_it_cannot_use():
    good = timed(StepTimer(), 200, 0.040, 0.002, 8).state()
    few = timed(StepTimer(), MIN_SAMPLES - 1, 0.040, 0.002, 8).state()
    for bad in [few, {**good, "xtx": good["xtx"][:3]}, {**good, "xty": good["xty"] * np.nan}, {**good, "xtx": good["xtx"][0]},
                {k: v for k, v in good.items() if k != "yty"}]:
        timer = StepTimer()
        assert not timer.resume(bad) and not timer.measured and timer.resumed_samples == 0
    fixed = StepTimer(np.array([1.0, 0.0, 0.1, 4.0]))
    assert not fixed.resume(good) and list(fixed.cost(1)) == list(fixed.cost(64)) == [1.0, 0.0, 0.1, 4.0]


def test_the_store_keeps_a_timer_for_the_next_engine_of_the_same_key(tmp_path, caplog):
    store = StepTimeStore.for_engine(str(tmp_path / "st"), engine_config())
    first = StepTimer()
    assert not store.attach(first)  # nothing kept yet
    store.tick()
    assert not store.path.exists()  # too few steps, too soon
    timed(first, 300, 0.040, 0.002, 8)
    store._saved -= 60  # as if a minute had passed
    store.tick()
    assert store.path.exists()

    again = StepTimeStore.for_engine(str(tmp_path / "st"), engine_config())
    second = StepTimer()
    assert again.path == store.path and again.attach(second)
    for rows in (1, 16):  # the same predictions (at batch 16 every knee up to 16 tokens predicts alike)
        assert second.predict(rows, rows + 20) == pytest.approx(first.predict(rows, rows + 20), rel=0.05)

    # another dtype or compiled engine: another file, starting from the prior
    for other in (engine_config(dtype="torch.float32"), engine_config(eager=False), engine_config(model="/models/b")):
        assert StepTimeStore.for_engine(str(tmp_path / "st"), other).path != store.path
    assert engine_key(engine_config())["processor"]

    # a file written for another key under this name, and a corrupt one, are reported and left unused
    store.key = {**store.key, "dtype": "torch.float16"}
    store.save(first.state())
    third = StepTimer()
    assert not StepTimeStore.for_engine(str(tmp_path / "st"), engine_config()).attach(third)
    assert not third.measured and "belongs to another engine" in caplog.text
    store.path.write_bytes(b"not a zip")
    assert not StepTimeStore.for_engine(str(tmp_path / "st"), engine_config()).attach(StepTimer())
    assert "unreadable" in caplog.text


def test_the_store_is_off_when_asked_or_without_a_model(tmp_path, isolated_cache):
    assert StepTimeStore.for_engine("off", engine_config()) is None
    assert StepTimeStore.for_engine("", SimpleNamespace(model_config=SimpleNamespace())) is None
    default = StepTimeStore.for_engine("", engine_config())
    assert default.path.parent == isolated_cache / "step-time"
    (tmp_path / "file").write_text("")
    with pytest.raises(TascError, match="step_time_dir .* cannot be created"):
        StepTimeStore.for_engine(str(tmp_path / "file" / "sub"), engine_config())


def test_a_proposer_starts_from_the_kept_step_time(tmp_path, tokenizer, isolated_cache):
    from tasc_vllm.config import TascConfig
    from tasc_vllm.index.index_file import write_index
    from tasc_vllm.proposer import TascProposer

    index = write_index(['{"AddressNumber": "12", "StreetName": "Main"}'] * 8, tmp_path / "a.tasc")
    config = engine_config()
    StepTimeStore.for_engine("", config).save(timed(StepTimer(), 300, 0.040, 0.002, 8).state())
    proposer = TascProposer(config, tokenizer=tokenizer, config=TascConfig(index=str(index)))
    assert proposer.timer.measured and proposer.timer.resumed_samples == 300
    assert proposer.timer.cost(1)[3] == 8
    proposer.write_stats(str(tmp_path / "stats.json"))
    assert '"step_cost_resumed_steps": 300' in (tmp_path / "stats.json").read_text()
    fixed = TascProposer(config, tokenizer=tokenizer, config=TascConfig(index=str(index), step_cost_model="1,0,0.1,4"))
    assert fixed.step_times is None and list(fixed.timer.cost(1)) == [1.0, 0.0, 0.1, 4.0]


def test_a_fit_at_one_batch_size_puts_the_step_in_its_fixed_part():
    """At batch 1 every step has one row, so the fixed part and the cost per row are one
    unknown: the fit gives it all to the fixed part, which a later batch size then corrects."""
    one = timed(StepTimer(), 400, 0.050, 0.001, 8, rows=(1,))
    fixed, per_row, per_token, knee = one.cost(1)
    assert fixed == pytest.approx(0.050, rel=0.03) and per_row < 1e-5 and knee == 8
    # where the rows vary within a bucket, the cost per row is measured as before
    mixed = timed(StepTimer(), 400, 0.040, 0.001, 8, rows=(8, 12, 15), seed=2, per_row=0.003)
    assert mixed.cost(12)[1] == pytest.approx(0.003, rel=0.1)
    assert mixed.predict(12, 30) == pytest.approx(0.040 + 0.003 * 12 + 0.001 * 22, rel=0.03)


def test_each_batch_size_bucket_has_its_own_fit():
    """The knee is not the same at every batch size (on this CPU 8 tokens at batch 1, 64 at
    batch 16): each bucket fits its own, and a bucket with no steps keeps the prior."""
    timer = timed(StepTimer(), 300, 0.045, 0.001, 8, rows=(1,))
    timed(timer, 300, 0.140, 0.0015, 64, rows=(16,), seed=3)
    assert timer.cost(1)[3] == 8 and timer.cost(16)[3] == 64 and timer.cost(20)[3] == 64
    assert timer.cost(4)[0] == 16.0 and not timer.fits[bucket(4)].measured  # the prior
    assert set(timer.costs()) == {"1", "16"}
    assert "1 rows:" in timer.summary() and "16-31 rows:" in timer.summary()
