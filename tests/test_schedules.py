import math

import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import schedules as S

T = 1000
STEPS = [1, 10, 100, 250, 500, 750, 999]


def abar_product(beta_fn, t):
    """ᾱ_t = Π_{i=1..t} (1 − β_i), computed term by term in float64 (independent of the module)."""
    return math.prod(1.0 - beta_fn(i) for i in range(1, t + 1))


def test_linear_matches_closed_form_and_literature():
    sched = S.make_schedule("linear", T)
    beta = lambda i: 1e-4 + (i - 1) * (0.02 - 1e-4) / (T - 1)
    for t in STEPS + [T]:
        assert float(sched.alphas_cumprod[t]) == pytest.approx(abar_product(beta, t), rel=1e-4, abs=1e-9)
    # Widely quoted value for the DDPM linear schedule: ᾱ_T ≈ 4.04e-5.
    assert float(sched.alphas_cumprod[T]) == pytest.approx(4.04e-5, rel=0.01)
    assert float(sched.alphas_cumprod[0]) == 1.0 and float(sched.betas[0]) == 0.0


def test_scaled_linear_is_linear_in_sqrt_beta():
    sched = S.make_schedule("scaled_linear", T)
    beta = lambda i: (math.sqrt(1e-4) + (i - 1) / (T - 1) * (math.sqrt(0.02) - math.sqrt(1e-4))) ** 2
    for t in STEPS:
        assert float(sched.alphas_cumprod[t]) == pytest.approx(abar_product(beta, t), rel=1e-4)


def _cos2(t, s=0.008):
    return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


def test_cosine_is_nichol_dhariwal():
    sched = S.make_schedule("cosine", T)
    for t in STEPS:
        assert float(sched.alphas_cumprod[t]) == pytest.approx(_cos2(t) / _cos2(0), rel=1e-4)


def test_squared_cosine_is_stable_diffusions_squaredcos_cap_v2():
    sched = S.make_schedule("squared_cosine", T)
    beta = lambda i: min(1 - _cos2(i) / _cos2(i - 1), 0.999)
    for t in STEPS + [T]:
        assert float(sched.alphas_cumprod[t]) == pytest.approx(abar_product(beta, t), rel=1e-4, abs=1e-9)


def test_sigmoid_follows_chen_2023():
    sched = S.make_schedule("sigmoid", T)
    sig = lambda z: 1 / (1 + math.exp(-z))
    gamma = lambda u: (sig(3) - sig(u * 6 - 3)) / (sig(3) - sig(-3))
    for t in STEPS[:-1]:
        assert float(sched.alphas_cumprod[t]) == pytest.approx(gamma(t / T), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("name", S.SCHEDULE_NAMES)
def test_every_schedule_is_a_valid_diffusion(name):
    sched = S.make_schedule(name, T)
    abar = np.asarray(sched.alphas_cumprod)
    assert abar.shape == (T + 1,)
    assert np.all(np.diff(abar) < 0), "ᾱ must strictly decrease"
    assert 0 < abar[-1] < 0.01
    b = np.asarray(sched.betas)[1:]
    assert np.all((b > 0) & (b <= S.MAX_BETA))


@pytest.mark.parametrize("name", S.SCHEDULE_NAMES)
def test_posterior_coefficients(name):
    sched = S.make_schedule(name, T)
    abar = np.asarray(sched.alphas_cumprod, np.float64)
    t = np.arange(2, T + 1)
    # A noiseless x_t = sqrt(ᾱ_t) x0 must have posterior mean sqrt(ᾱ_{t-1}) x0.
    mean = np.asarray(sched.posterior_mean_coef_x0)[t] + np.asarray(sched.posterior_mean_coef_xt)[t] * np.sqrt(abar[t])
    np.testing.assert_allclose(mean, np.sqrt(abar[t - 1]), rtol=2e-4, atol=1e-6)
    beta = np.asarray(sched.betas, np.float64)
    np.testing.assert_allclose(np.asarray(sched.posterior_variance)[t],
                               beta[t] * (1 - abar[t - 1]) / (1 - abar[t]), rtol=2e-3)  # reference from float32 ᾱ
    assert float(sched.posterior_variance[1]) == 0.0


def test_q_sample_and_conversions_round_trip():
    sched = S.make_schedule("linear", T)
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.uniform(-1, 1, (3, 4, 4, 3)), jnp.float32)
    eps = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
    t = jnp.array([0, 300, 900])
    xt = S.q_sample(sched, x0, t, eps)
    np.testing.assert_allclose(xt[0], x0[0])  # t = 0 is the clean image
    np.testing.assert_allclose(S.predict_x0_from_eps(sched, xt, t, eps), x0, atol=2e-4)
    np.testing.assert_allclose(S.predict_eps_from_x0(sched, xt, t, x0)[1:], eps[1:], atol=2e-4)
    assert float(jnp.abs(S.predict_eps_from_x0(sched, xt, t, x0)[0]).max()) == 0.0


def test_noise_fraction_to_step_and_bad_name():
    sched = S.make_schedule("linear", T)
    assert int(S.noise_fraction_to_step(sched, 0.35)) == 350
    assert int(S.noise_fraction_to_step(sched, 1.5)) == T
    with pytest.raises(ValueError, match="unknown schedule"):
        S.make_schedule("quadratic")
