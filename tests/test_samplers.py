import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import samplers
from diffsr_jax.schedules import make_schedule

SCHED = make_schedule("linear", 1000)


def oracle(x0):
    """The perfect ε-predictor for a known clean image."""
    abar = SCHED.alphas_cumprod

    def eps_fn(x, t):
        a = abar[t][:, None, None, None]
        return (x - jnp.sqrt(a) * x0) / jnp.sqrt(jnp.where(a < 1, 1 - a, 1.0))

    return eps_fn


def toy_eps(x, t):
    """A fixed nonlinear function of (x, t): stands in for a network without any training."""
    return jnp.tanh(0.7 * x + 0.001 * t[:, None, None, None].astype(jnp.float32)) * 0.5


@pytest.fixture(scope="module")
def x0():
    return jnp.asarray(np.random.default_rng(0).uniform(-0.9, 0.9, (2, 8, 8, 3)), jnp.float32)


def test_ladder_is_exact_and_descending():
    lad = samplers.timestep_ladder(jnp.array([1000, 7, 0]), 10)
    assert lad.shape == (3, 11)
    np.testing.assert_array_equal(lad[0], np.arange(1000, -1, -100))
    assert lad[1, 0] == 7 and lad[1, -1] == 0 and np.all(np.diff(np.asarray(lad[1])) <= 0)
    np.testing.assert_array_equal(lad[2], 0)


def test_quadratic_ladder_takes_small_steps_near_zero():
    lad = np.asarray(samplers.timestep_ladder(jnp.array([200, 3, 0]), 5, power=2))
    np.testing.assert_array_equal(lad[0], [200, 128, 72, 32, 8, 0])   # ⌊200·((5−k)/5)²⌋
    assert lad[1, 0] == 3 and lad[1, -1] == 0 and np.all(np.diff(lad[1]) <= 0)
    np.testing.assert_array_equal(lad[2], 0)
    # traced t_start: one compiled ladder for every noise level
    np.testing.assert_array_equal(jax.jit(lambda t: samplers.timestep_ladder(t, 5, 2))(jnp.array([200])), lad[:1])
    with pytest.raises(ValueError, match="power"):
        samplers.timestep_ladder(jnp.array([200]), 5, power=3)


def test_quad_samplers_differ_from_even_ones_only_in_the_ladder(x0):
    xt, t, key = x0, jnp.array([200, 200]), jax.random.key(1)
    quad = samplers.SAMPLERS["ddim-quad"](toy_eps, SCHED, xt, t, key, num_steps=5)
    explicit = samplers.ddim_sample(toy_eps, SCHED, xt, t, key, num_steps=5, ladder_power=2)
    even = samplers.SAMPLERS["ddim"](toy_eps, SCHED, xt, t, key, num_steps=5)
    np.testing.assert_array_equal(quad, explicit)
    assert float(jnp.abs(quad - even).max()) > 1e-4
    assert set(samplers.SAMPLERS) == set(__import__("diffsr_jax.defaults").defaults.SAMPLERS)


@pytest.mark.parametrize("name", ["ddim", "ddpm", "ddim-quad", "ddpm-quad"])
def test_t_start_zero_returns_input(name, x0):
    out = samplers.SAMPLERS[name](toy_eps, SCHED, x0, jnp.int32(0), jax.random.key(0), num_steps=5)
    np.testing.assert_array_equal(out, x0)


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
@pytest.mark.parametrize("t_start", [1, 37, 250, 700, 1000])
def test_oracle_recovers_x0(name, t_start, x0):
    eps = jax.random.normal(jax.random.key(1), x0.shape)
    a = SCHED.alphas_cumprod[t_start]
    x_t = jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps
    out = samplers.SAMPLERS[name](oracle(x0), SCHED, x_t, jnp.int32(t_start), jax.random.key(2), num_steps=10)
    np.testing.assert_allclose(out, x0, atol=2e-3)


def test_vmap_over_t_start_equals_per_item(x0):
    ts = jnp.array([0, 5, 120, 480, 999])
    key = jax.random.key(3)
    run = lambda t: samplers.ddim_sample(toy_eps, SCHED, x0, t, key, num_steps=8, eta=0.5)
    batched = jax.jit(jax.vmap(run))(ts)
    for i, t in enumerate(ts):
        np.testing.assert_allclose(batched[i], run(t), atol=1e-5)


def test_per_item_t_start_equals_separate_calls(x0):
    key = jax.random.key(4)
    both = samplers.ddim_sample(toy_eps, SCHED, x0, jnp.array([30, 600]), key, num_steps=6)
    for i, t in enumerate([30, 600]):
        single = samplers.ddim_sample(toy_eps, SCHED, x0[i:i + 1], jnp.int32(t), key, num_steps=6)
        np.testing.assert_allclose(both[i], single[0], atol=1e-5)


def test_one_trace_for_many_t_values(x0):
    traces = []

    @jax.jit
    def sample(t):
        traces.append(1)
        return samplers.ddim_sample(toy_eps, SCHED, x0, t, jax.random.key(0), num_steps=4)

    for t in [0, 1, 10, 99, 250, 400, 731, 1000]:
        sample(jnp.int32(t)).block_until_ready()
    assert len(traces) == 1


def test_ddim_eta_one_equals_ddpm(x0):
    key = jax.random.key(5)
    a = samplers.ddim_sample(toy_eps, SCHED, x0, jnp.int32(400), key, num_steps=7, eta=1.0, clip_x0=False)
    b = samplers.ddpm_sample(toy_eps, SCHED, x0, jnp.int32(400), key, num_steps=7, clip_x0=False)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_sampler_is_reverse_differentiable(x0):
    loss = lambda x: jnp.sum(samplers.ddim_sample(toy_eps, SCHED, x, jnp.int32(300), jax.random.key(0),
                                                  num_steps=4, clip_x0=False) ** 2)
    g = jax.grad(loss)(x0)
    assert g.shape == x0.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


def test_correct_x0_hook_is_applied(x0):
    target = jnp.zeros_like(x0)
    out = samplers.ddim_sample(toy_eps, SCHED, x0, jnp.int32(500), jax.random.key(0), num_steps=5,
                               correct_x0=lambda x0_hat, t: target)
    np.testing.assert_allclose(out, target, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "ddim-quad", "ddpm", "ddpm-quad"])
def test_last_step_is_the_ladders_step_before_zero(sampler):
    """The final consistency weight is read at this step: the ladder's τ_{K−1}, at least 1."""
    power = samplers.ladder_power(sampler)
    assert power == (2 if sampler.endswith("-quad") else 1)
    t = jnp.arange(0, 300, 7)
    for k in (1, 2, 5, 20):
        ladder = np.asarray(samplers.timestep_ladder(t, k, power))
        got = np.asarray(samplers.last_step(t, k, sampler))
        np.testing.assert_array_equal(got, np.maximum(ladder[:, -2], 1))
        np.testing.assert_array_equal(got, np.maximum(np.asarray(t) // k ** power, 1))
