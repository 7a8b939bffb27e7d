"""autotune.FastestStep: races equivalent train steps on real batches, then keeps the fastest."""

import jax
import numpy as np
import pytest

from diffsr_jax import autotune, train_lib


class FakeClock:
    """Advances by the duration the step being timed declares (no real timing in tests)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _steps(clock, durations, calls):
    def make(name):
        def step(state, batch, key):
            calls.append(name)
            clock.now += durations[name]
            return state + 1, {"loss": float(state)}
        return step
    return {n: make(n) for n in durations}


def test_races_then_keeps_the_fastest_and_every_call_is_a_step():
    clock, calls, reports = FakeClock(), [], []
    step = autotune.FastestStep(_steps(clock, {"slow": 2.0, "fast": 1.0}, calls), rounds=2,
                                report=reports.append, clock=clock)
    state = 0
    for _ in range(10):
        assert step.chosen is None or step.chosen == "fast"
        state, _ = step(state, None, None)
    assert state == 10  # every call advanced the state, raced or not
    # 2 untimed (compiling) calls + 2 timed rounds of each, alternating; then only the winner.
    assert calls == ["slow", "fast"] * 3 + ["fast"] * 4
    assert step.chosen == "fast" and step.medians == {"slow": 2.0, "fast": 1.0}
    assert len(reports) == 1 and reports[0].endswith("-> fast")


def test_a_single_candidate_is_chosen_without_a_race():
    clock, calls = FakeClock(), []
    step = autotune.FastestStep(_steps(clock, {"only": 1.0}, calls), clock=clock, report=calls.append)
    assert step.chosen == "only"
    step(0, None, None)
    assert calls == ["only"]


@pytest.mark.parametrize("bad", [{}, None])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        if bad is None:
            autotune.FastestStep({"a": lambda *a: a}, rounds=0)
        else:
            autotune.FastestStep(bad)


def test_auto_races_both_weight_gradients_on_a_single_cpu_process(tiny_config, tmp_path, capsys):
    c = tiny_config
    assert train_lib.conv_weight_grad_candidates(c) == ("xla",)
    c.train.conv_weight_grad = "auto"
    assert train_lib.conv_weight_grad_candidates(c) == (("xla", "gemm") if jax.default_backend() == "cpu"
                                                        else ("xla",))
    assert train_lib.build_model(c).conv_weight_grad == "xla"  # the function is the same either way
    c.train.num_steps = 9  # 2 compiling calls + 3 timed rounds of two candidates + 1 after
    state = train_lib.train_and_evaluate(c, str(tmp_path / "auto"), progress=False)
    assert int(state.step) == 9
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    report = capsys.readouterr().err
    assert "conv_weight_grad: fastest train step: xla" in report and "gemm" in report
