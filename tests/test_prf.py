import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import tiny as tiny_config_module
from diffsr_jax import calibration, loading, metrics, noise_table, pipeline, prf, protocols, schedules, sweep, train_lib
from diffsr_jax.schedules import make_schedule
from conftest import random_params

SCALES = (2.0, 3.0, 4.0)
T_GRID = np.array([0, 5, 10, 20, 30, 45, 60, 80], np.int32)  # 8 t on the tiny model's T = 100


@pytest.fixture(scope="module")
def tiny():
    """Tiny UNet with random (non-trivial) params; see conftest.random_params."""
    c = tiny_cfg()
    model = train_lib.build_model(c)
    params = random_params(model)
    return model, params, schedules.schedule_from_spec(train_lib.schedule_spec(c))


def tiny_cfg():
    return tiny_config_module.get_config()


def textured_images(n, size, seed=0):
    """Photos-like crops in [0, 1]: gradients plus texture at several frequencies, so the bicubic
    error grows with the scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for i in range(n):
        f = rng.uniform(2, 12, size=3)
        base = np.stack([yy, xx, 0.5 + 0.3 * np.sin(2 * np.pi * f[0] * xx * (1 + yy))], -1)
        base += 0.15 * np.sin(2 * np.pi * (f[1] * xx + f[2] * yy))[..., None]
        imgs.append(np.clip(base + 0.05 * rng.normal(size=base.shape), 0, 1))
    return np.stack(imgs).astype(np.float32)


@pytest.fixture(scope="module")
def analytic(tiny):
    model, params, schedule = tiny
    return prf.analytic_table(model, params, schedule, textured_images(3, 32), (1.5, 2.0, 4.0, 8.0),
                              jax.random.key(0))


@pytest.fixture(scope="module")
def swept(tiny):
    model, params, schedule = tiny
    before = sweep.TRACES["sweep"]
    hr = textured_images(2, 16, seed=3)
    res = sweep.sweep(model, params, schedule, hr, SCALES, T_GRID, jax.random.key(5), num_steps=2, chunk=7,
                    return_images=True)
    return hr, res, sweep.TRACES["sweep"] - before


# ---------------------------------------------------------------------------------------------
# analytic part


def test_signature_nondecreasing_fidelity_nonincreasing(tiny, analytic):
    _, _, schedule = tiny
    T = schedule.num_steps
    assert np.all(analytic.E > 0) and np.all(np.isfinite(analytic.E))
    for variance in ("ddpm", "ddim"):
        LS = prf.signature_loss(analytic.E, schedule, variance, t_values=analytic.t_values)
        assert LS.shape == (T + 1,) and LS[0] == LS[1] == 0 and np.all(np.isfinite(LS))
        assert np.all(np.diff(LS) >= 0) and LS[-1] > 0
    for LF in analytic.LF:
        assert LF[0] == np.inf and np.all(np.isfinite(LF[1:]))
        assert np.all(np.diff(LF[1:]) <= 0) and LF[-1] < 1e-3 * LF[1]


def test_signature_weights_closed_forms():
    s = make_schedule("linear", 100)
    b = np.asarray(s.betas, np.float64)
    abar = np.cumprod(1 - b)
    w_ddpm, w_ddim = prf.signature_weights(s, "ddpm"), prf.signature_weights(s, "ddim")
    assert w_ddpm[0] == w_ddim[0] == 0
    # i = 1: β̃_1 = 0 is replaced by β_1, so both variances give 1/(2α_1).
    assert w_ddpm[1] == pytest.approx(1 / (2 * (1 - b[1]))) and w_ddim[1] == pytest.approx(w_ddpm[1])
    i = 37
    assert w_ddpm[i] == pytest.approx(b[i] / (2 * (1 - b[i]) * (1 - abar[i - 1])))
    assert w_ddim[i] == pytest.approx(b[i] / (2 * (1 - b[i]) * (1 - abar[i])))
    assert np.all(w_ddpm[2:] >= w_ddim[2:])  # β̃ ≤ β
    # Lemma 1 sums i < t: with E ≡ 1, L^S_t is the partial sum of the weights.
    LS = prf.signature_loss(np.ones(101), s, "ddim")
    assert LS[10] == pytest.approx(w_ddim[1:10].sum())


def test_fidelity_kl_matches_monte_carlo():
    """KL(q(x_t|x) ‖ q(x_t|x̂)) estimated by sampling x_t ~ q(x_t|x) and averaging log q/q̂."""
    s = make_schedule("linear", 100)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1, 4, 4, 3))
    x_hat = x + 0.3 * rng.normal(size=x.shape)
    kl = prf.fidelity_loss(x, x_hat, s, reduction="sum")
    kl_mean = prf.fidelity_loss(x, x_hat, s)
    np.testing.assert_allclose(kl_mean[1:] * x.size, kl[1:], rtol=1e-12)
    abar = np.cumprod(1 - np.asarray(s.betas, np.float64))
    n = 200_000
    for t in (3, 20, 60):
        a, var = np.sqrt(abar[t]), 1 - abar[t]
        xt = a * x.reshape(-1) + np.sqrt(var) * rng.normal(size=(n, x.size))
        log_ratio = (((xt - a * x_hat.reshape(-1)) ** 2).sum(1) - ((xt - a * x.reshape(-1)) ** 2).sum(1)) / (2 * var)
        stderr = log_ratio.std() / np.sqrt(n)
        assert abs(log_ratio.mean() - kl[t]) < 5 * stderr + 1e-9, (t, log_ratio.mean(), kl[t])
    assert prf.fidelity_loss(x, x, s)[0] == 0  # x̂ = x: no discrepancy at any t


def test_t_star_increases_with_scale_analytic(analytic):
    assert np.all(np.diff(analytic.mse) > 0)
    t_star = [f.t_star for f in analytic.fields]
    assert np.all(np.diff(t_star) >= 0), t_star
    assert t_star[-1] > t_star[0]
    for f in analytic.fields:  # default thresholds: the PRF exists and holds t*
        assert not f.empty and any(a <= f.t_star <= b for a, b in f.intervals)
        assert f.c_s == analytic.fields[0].c_s and f.c_f == analytic.fields[0].c_f  # shared by scales


def test_empty_prf_is_reported_empty(analytic):
    field = prf.prf(analytic.LS, analytic.LF[-1], c_s=analytic.LS[3], c_f=1e-9)
    assert field.empty and field.intervals is None
    # Synthetic curves: L^S = t/T, ωL^F = 1 − t/T with thresholds 0.3 — no overlap; the least
    # violating step is the crossing at T/2.
    T = 100
    t = np.arange(T + 1) / T
    f = prf.prf(t, (1 - t) / 0.5, omega=0.5, c_s=0.3, c_f=0.3)
    assert f.empty and f.t_star == 50
    f = prf.prf(1.1 * t, (1 - t) / 0.5, omega=0.5, c_s=0.885, c_f=0.6)
    assert f.intervals == [(40, 80)] and f.t_star == 40  # the sum rises with t: the lower edge


def test_model_error_depends_only_on_t(tiny, analytic):
    """E_t is keyed by t itself: a permuted grid (same padded length: no retrace) gives the same
    values, so chunking and grid choice do not change the estimate."""
    model, params, schedule = tiny
    x = jnp.asarray(textured_images(3, 32)) * 2 - 1
    perm = np.random.default_rng(0).permutation(len(analytic.t_values))
    before = prf.TRACES["model_error"]
    e = prf.per_step_model_error(model, params, schedule, x, jax.random.key(0), analytic.t_values[perm])
    assert prf.TRACES["model_error"] == before
    np.testing.assert_allclose(e, analytic.E[perm], rtol=1e-5)
    with pytest.raises(ValueError):
        prf.per_step_model_error(model, params, schedule, x, jax.random.key(0), [0, 5])


# ---------------------------------------------------------------------------------------------
# empirical sweep


def test_sweep_traces_once_for_8t_by_3_scales(tiny, swept):
    model, params, schedule = tiny
    hr, res, traces = swept
    assert traces == 1 and len(res.t) == 8 and len(res.scales) == 3
    assert res.metrics["psnr"].shape == (3, 8, 2) and res.images.shape == (3, 8, 2, 16, 16, 3)
    before = sweep.TRACES["sweep"]
    other = sweep.sweep(model, params, schedule, hr, (2.5, 3.5, 6.0), T_GRID[::-1] + 3, jax.random.key(6),
                      num_steps=2, chunk=7, return_images=True)
    assert sweep.TRACES["sweep"] == before  # new scales and t values: same executable
    assert np.all(np.isfinite(other.metrics["psnr"]))


def test_sweep_cells_equal_single_runs(tiny, swept):
    model, params, schedule = tiny
    hr, res, _ = swept
    run = jax.jit(pipeline.diffsr, static_argnames=("model", "num_steps", "sampler"))
    key = jax.random.key(5)
    # t = 0 (bicubic), a middle cell, and the very last cell (in the padded chunk).
    for si, ti, n in [(0, 0, 0), (1, 4, 1), (2, 7, 1)]:
        x_up = protocols.degrade(jnp.asarray(hr[n:n + 1]), SCALES[si])
        alone = run(model, params, schedule, x_up, jnp.array([T_GRID[ti]]), sweep.cell_key(key, n), num_steps=2)
        alone01 = (np.clip(np.asarray(alone[0]), -1, 1) + 1) / 2
        np.testing.assert_allclose(res.images[si, ti, n], alone01, atol=2e-5)
        m = sweep.cell_metrics(jnp.asarray(alone01[None]), jnp.asarray(hr[n:n + 1]))
        for name in ("psnr", "ssim", "lf_err", "hf_err"):
            np.testing.assert_allclose(res.metrics[name][si, ti, n], float(m[name][0]), rtol=1e-3, atol=1e-5)
    assert np.isnan(res.metrics["lpips"]).all()  # no LPIPS module given


def test_frequency_errors_split_bands():
    rng = np.random.default_rng(0)
    ref = jnp.asarray(rng.uniform(size=(1, 32, 32, 3)), jnp.float32)
    lf, hf = metrics.frequency_errors(ref, ref)
    assert float(lf[0]) == 0 and float(hf[0]) == 0
    # Keep only the low band: the low error is ~0 and the high error is exactly 1 (all detail gone).
    r = np.sqrt(np.fft.fftfreq(32)[:, None] ** 2 + np.fft.fftfreq(32)[None, :] ** 2)
    low = np.real(np.fft.ifft2(np.fft.fft2(np.asarray(ref), axes=(1, 2)) * (r <= 0.125)[None, :, :, None],
                               axes=(1, 2)))
    lf, hf = metrics.frequency_errors(jnp.asarray(low, jnp.float32), ref)
    assert float(lf[0]) < 1e-6 and float(hf[0]) == pytest.approx(1.0, abs=1e-4)


def test_empirical_fields():
    lp = np.array([[0.30, 0.25, 0.25, 0.40], [0.50, 0.45, 0.40, 0.60]])[..., None]
    res = sweep.SweepResult(scales=(2.0, 4.0), t=np.array([0, 10, 20, 40]), metrics={"lpips": lp}, images=None)
    f = sweep.empirical_fields(res)
    assert f[0] == {"t_star": 10, "prf": [(10, 20)]} and f[1] == {"t_star": 20, "prf": [(10, 20)]}
    worse = sweep.SweepResult(scales=(8.0,), t=np.array([0, 10]), metrics={"lpips": np.array([[[0.1], [0.2]]])},
                            images=None)
    assert sweep.empirical_fields(worse) == [{"t_star": 0, "prf": None}]


def test_tied_with_best_uses_the_paired_standard_error():
    # 3 images; t = 20 is best on average. t = 10 is worse by 0.01 on every image (paired SE 0: a
    # real difference); t = 40 is worse by 0.01 on average but ±0.05 from image to image (a tie).
    lp = np.array([[[0.30, 0.35, 0.40], [0.21, 0.26, 0.31], [0.20, 0.25, 0.30], [0.26, 0.20, 0.32]]])
    res = sweep.SweepResult(scales=(2.0,), t=np.array([0, 10, 20, 40]), metrics={"lpips": lp}, images=None)
    assert sweep.empirical_fields(res)[0]["t_star"] == 20
    assert sweep.tied_with_best(res, [20]) == [[20, 40]]
    assert sweep.tied_with_best(res, [20], k=0.0) == [[20]]
    one = sweep.SweepResult(scales=(2.0,), t=np.array([0, 10]), metrics={"lpips": np.array([[[0.3], [0.3]]])},
                          images=None)
    assert sweep.tied_with_best(one, [0]) == [[0, 10]]  # equal means tie even without an error estimate


def test_empirical_fields_tolerance_prefers_the_smallest_t_near_the_best():
    lp = np.array([[0.30, 0.204, 0.200, 0.250], [0.50, 0.45, 0.40, 0.60]])[..., None]
    res = sweep.SweepResult(scales=(2.0, 4.0), t=np.array([0, 10, 20, 40]), metrics={"lpips": lp}, images=None)
    assert [f["t_star"] for f in sweep.empirical_fields(res)] == [20, 20]
    near = sweep.empirical_fields(res, tolerance=0.005)
    assert [f["t_star"] for f in near] == [10, 20]  # 0.204 is within 0.005 of 0.200; 0.45 is not of 0.40
    assert [f["prf"] for f in near] == [f["prf"] for f in sweep.empirical_fields(res)]  # the field is unchanged
    assert sweep.empirical_fields(res, tolerance=1.0)[0]["t_star"] == 0
    with pytest.raises(ValueError, match="tolerance"):
        sweep.empirical_fields(res, tolerance=-0.1)


def test_pil_degradation_is_the_evaluation_protocols_lr():

    rng = np.random.default_rng(1)
    photo = np.clip(rng.normal(0.5, 0.2, (50, 60, 3)), 0, 1)
    for scale in (2.0, 2.7):
        hr, lr = protocols.paper_protocol(photo, scale, size=32)
        pil = np.asarray(protocols.downscale(hr[None], scale, "pil"))[0]
        np.testing.assert_allclose((pil + 1) / 2, lr, atol=1e-6)   # the very LR Table 1 feeds the model
        flt = np.asarray(protocols.downscale(hr[None], scale, "jax"))[0]
        assert flt.shape == pil.shape and 0 < np.abs(flt - pil).mean() < 0.1  # same filter family, not equal
    assert protocols.degrade(hr[None], 2.7, "pil").shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="degradation"):
        protocols.downscale(hr[None], 2.0, "lanczos")


def test_picked_steps_one_se_ships_the_least_noise_tied_with_the_argmin():
    assert calibration.picked_steps([200, 50], [[100, 200], [50]], "one-se") == [100, 50]
    assert calibration.picked_steps([200, 50], [[100, 200], [50]], "argmin") == [200, 50]
    assert calibration.picked_steps([25], [[0, 10, 25]], "one-se") == [0]   # noise that does not measurably help: none
    with pytest.raises(ValueError, match="pick"):
        calibration.picked_steps([25], [[25]], "median")


def test_lpips_psnr_pick_trades_lpips_for_psnr_at_its_exchange_rate():
    t = [0, 50, 100, 200]
    lp = [[0.20, 0.100, 0.095, 0.092]]   # LPIPS keeps falling a little with more noise ...
    ps = [[30.0, 29.6, 29.3, 28.3]]      # ... while each step costs PSNR
    # 50 → 100 buys 0.005 LPIPS for 0.3 dB (0.017/dB), 100 → 200 0.003 for 1 dB (0.003/dB).
    assert calibration.weighted_steps(t, lp, ps, 0.0) == [200]          # k = 0: the LPIPS argmin
    assert calibration.weighted_steps(t, lp, ps, 0.012) == [100]
    assert calibration.weighted_steps(t, lp, ps, 0.02) == [50]
    assert calibration.weighted_steps(t, lp, ps, 10.0) == [0]           # PSNR only: no noise
    assert calibration.picked_steps([200], [[200]], "lpips-psnr", t_values=t, lpips_mean=lp, psnr_mean=ps) == [100]
    with pytest.raises(ValueError, match="needs"):
        calibration.picked_steps([200], [[200]], "lpips-psnr")
    with pytest.raises(ValueError, match="psnr_weight"):
        calibration.weighted_steps(t, lp, ps, -1.0)
    with pytest.raises(ValueError, match="increasing"):
        calibration.weighted_steps(t[::-1], lp, ps, 0.01)


# A two-scale sweep of the psnr-floor pick's tests: t grid, mean LPIPS and mean PSNR per (scale, t).
FLOOR_T = [0, 25, 50, 100, 200]
FLOOR_LPIPS = [[0.20, 0.12, 0.10, 0.08, 0.07],
               [0.40, 0.30, 0.30, 0.25, 0.22]]
FLOOR_PSNR = [[30.0, 29.8, 29.5, 29.0, 28.0],
              [25.0, 24.9, 24.9, 24.5, 24.0]]


def test_psnr_floor_pick_buys_the_best_lpips_that_keeps_the_reference_psnr():
    t, lp, ps = FLOOR_T, FLOOR_LPIPS, FLOOR_PSNR
    # Scale 0: steps with PSNR >= 29.4 are 0, 25, 50 → the LPIPS-best of them, 50. Scale 1: the floor
    # is above every step → the highest PSNR (t = 0: no noise rather than a loss of fidelity).
    assert calibration.floor_steps(t, lp, ps, [29.4, 25.5]) == [50, 0]
    assert calibration.floor_steps(t, lp, ps, [0.0, 24.9]) == [200, 25]      # LPIPS tie (25, 50) → the smaller t
    # The slack: 29.5 dB misses a 29.52 floor, but not by more than 0.02; 24.5 misses 24.9 by 0.4.
    assert calibration.floor_steps(t, lp, ps, [29.52, 24.9]) == [25, 25]
    assert calibration.floor_steps(t, lp, ps, [29.52, 24.9], slack=0.02) == [50, 25]
    assert calibration.floor_steps(t, lp, ps, [29.52, 24.9], slack=0.5) == [50, 100]
    for bad in (-0.01, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="slack"):
            calibration.floor_steps(t, lp, ps, [29.52, 24.9], slack=bad)
    assert calibration.picked_steps([200, 200], [[200], [200]], "psnr-floor", t_values=t, lpips_mean=lp, psnr_mean=ps,
                            psnr_floor=[29.0, 24.5]) == [100, 100]
    with pytest.raises(ValueError, match="psnr_floor"):
        calibration.picked_steps([200, 200], [[200], [200]], "psnr-floor", t_values=t, lpips_mean=lp, psnr_mean=ps)
    with pytest.raises(ValueError, match="one finite value per scale"):
        calibration.floor_steps(t, lp, ps, [29.0])
    with pytest.raises(ValueError, match="one finite value per scale"):
        calibration.floor_steps(t, lp, ps, [29.0, float("nan")])


def test_psnr_floor_pick_monotone_in_scale_never_ships_less_noise_at_a_larger_scale():
    t, lp, ps = FLOOR_T, FLOOR_LPIPS, FLOOR_PSNR
    # Unconstrained, the larger scale (row 1) takes t = 25 below the smaller's 50 (an LPIPS tie);
    # monotone, it picks among t >= 50, where 50 keeps its floor.
    assert calibration.floor_steps(t, lp, ps, [29.52, 24.9], slack=0.02) == [50, 25]
    assert calibration.floor_steps(t, lp, ps, [29.52, 24.9], slack=0.02, scales=[2.0, 4.0]) == [50, 50]
    # Rows in any order: the scales, not the row order, say which is larger (row 0 is 4x here, and
    # 50 at 4x after 25 at 2x is already monotone).
    assert calibration.floor_steps(t, lp, ps, [29.52, 24.9], slack=0.02, scales=[4.0, 2.0]) == [50, 25]
    # No allowed step keeps the floor: the highest PSNR among the allowed ones, not t = 0.
    assert calibration.floor_steps(t, lp, ps, [29.4, 25.5]) == [50, 0]
    assert calibration.floor_steps(t, lp, ps, [29.4, 25.5], scales=[2.0, 4.0]) == [50, 50]
    assert calibration.picked_steps([200, 200], [[200], [200]], "psnr-floor", t_values=t, lpips_mean=lp, psnr_mean=ps,
                            psnr_floor=[29.4, 25.5], scales=[2.0, 4.0]) == [50, 50]
    with pytest.raises(ValueError, match="one value per row"):
        calibration.floor_steps(t, lp, ps, [29.4, 25.5], scales=[2.0])
    with pytest.raises(ValueError, match="psnr-floor"):
        calibration.picked_steps([200, 200], [[200], [200]], "lpips-psnr", t_values=t, lpips_mean=lp, psnr_mean=ps,
                         scales=[2.0, 4.0])


def test_reference_floor_is_the_psnr_the_reference_ships():
    from diffsr_jax import api

    table = loading.read_noise_table(api.DEFAULT_CHECKPOINT).raw
    cons = table["modes"]["consistent"]
    floor = calibration.reference_floor(cons, [4.0, 2.0])
    for s, f in zip((4.0, 2.0), floor):
        i = cons["scales"].index(s)
        assert f == cons["metrics"]["psnr"][i][cons["metrics_t"].index(cons["t"][i])]
    with pytest.raises(ValueError, match="no scale"):
        calibration.reference_floor(cons, [3.0])
    with pytest.raises(ValueError, match="empirical"):
        calibration.reference_floor(dict(cons, rule="analytic"), [2.0])
    # A table re-picked against itself keeps every shipped step whose PSNR no LPIPS-better step
    # matches, and never ships a step of lower PSNR than its own.
    same = calibration.repick(table, "psnr-floor", reference=table)
    for mode, ref in ((same, table), (same["modes"]["consistent"], cons)):
        assert mode["pick"] == "psnr-floor" and mode["psnr_floor"] == calibration.reference_floor(ref, ref["scales"])
        for i, t in enumerate(mode["t"]):
            j = mode["metrics_t"].index(t)
            assert mode["metrics"]["psnr"][i][j] >= mode["psnr_floor"][i]
            # (≤ up to the 4-decimal rounding the pick compares LPIPS at)
            assert mode["metrics"]["lpips"][i][j] <= ref["metrics"]["lpips"][i][ref["metrics_t"].index(ref["t"][i])] + 5e-5
    assert calibration.repick(same, "psnr-floor") == same          # the stored floor re-picks to the same table
    weighted = calibration.repick(same, "lpips-psnr")
    assert "psnr_floor" not in weighted and "psnr_floor" not in weighted["modes"]["consistent"]
    with pytest.raises(ValueError, match="reference"):
        calibration.repick(weighted, "psnr-floor")                 # no floor stored, none given
    # The default slack leaves the bundled table's steps as they are (with its stored floor).
    slack = calibration.repick(table, "psnr-floor", psnr_floor_slack=calibration.DEFAULT_PSNR_FLOOR_SLACK)
    for mode, ref in ((slack, table), (slack["modes"]["consistent"], cons)):
        assert mode["t"] == ref["t"] and mode["psnr_floor_slack"] == calibration.DEFAULT_PSNR_FLOOR_SLACK


def test_repick_rederives_shipped_steps_from_stored_measurements():
    """The bundled table re-picked by each rule: its own rule (with the weight or floor it stores)
    reproduces it exactly, one-se the smallest tied step, argmin the LPIPS argmin; the input is not
    modified, and a table with no sweep stored (analytic) is refused."""
    from diffsr_jax import api

    table = loading.read_noise_table(api.DEFAULT_CHECKPOINT).raw
    pick = table["pick"]
    assert pick in calibration.PICKS and table["modes"]["consistent"]["pick"] == pick
    assert calibration.repick(table, pick, table.get("psnr_weight", calibration.DEFAULT_PSNR_WEIGHT)) == table
    one_se = calibration.repick(table, "one-se")
    for a in (one_se, one_se["modes"]["consistent"]):
        assert a["t"] == [min(tied) for tied in a["t_tied"]] and a["pick"] == "one-se"
        assert "psnr_weight" not in a and "psnr_floor" not in a and "psnr_floor_from" not in a
    argmin = calibration.repick(table, "argmin")["modes"]["consistent"]
    assert argmin["t"] == table["modes"]["consistent"]["t_best"]
    assert argmin["noise_fraction"] == [t / table["T"] for t in argmin["t"]]
    assert table["pick"] == pick                               # a copy was changed, not the input
    with pytest.raises(ValueError, match="empirical"):
        calibration.repick(dict(table, rule="analytic", modes={}), "argmin")
    analytic_plain = calibration.repick(dict(table, rule="analytic"), "argmin")   # only the consistent mode
    assert analytic_plain["t"] == table["t"] and analytic_plain["pick"] == pick


def test_load_crops_framings_and_pooled_folders(image_folder, tmp_path):

    from diffsr_jax.data import load_image_rgb

    other = tmp_path / "more"
    other.mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(other / f"m{i}.png")
    with pytest.raises(ValueError, match="5 requested"):
        calibration.load_crops(image_folder, 5, 16)
    crops = calibration.load_crops([image_folder, str(other)], 5, 16)      # 3 + 2 photos pooled: all used
    assert crops.shape == (5, 16, 16, 3)
    paper = calibration.load_crops(str(other), 2, 24, framing="paper")
    expected = [protocols.paper_hr_u8(load_image_rgb(str(other / f"m{i}.png")) / 255.0, 24) / 255.0 for i in range(2)]
    # the seeded choice orders the photos; each output is one photo's protocol HR
    assert max(min(float(np.abs(p - e).max()) for e in expected) for p in paper) < 1e-6
    with pytest.raises(ValueError, match="framing"):
        calibration.load_crops(image_folder, 1, 16, framing="centre")


# ---------------------------------------------------------------------------------------------
# calibrate.py


def test_calibrate_writes_table_and_refuses_overwrite(tiny_model_dir, image_folder, tmp_path):
    import calibrate
    from diffsr_jax import api

    ckpt = tiny_model_dir
    out = str(tmp_path / "prf.json")
    argv = ["--checkpoint", ckpt, "--data", image_folder, "--images", "3", "--crop", "32", "--scales", "2", "4",
            "--rule", "analytic", "--out", out, "--plots", str(tmp_path / "plots")]
    assert calibrate.main(argv) == 0
    table = json.load(open(out))
    assert table["scales"] == [2.0, 4.0] and len(table["noise_fraction"]) == 2 and table["rule"] == "analytic"
    assert table["noise_fraction"] == [t / 100 for t in table["t"]] and len(table["prf"]) == 2
    assert table["calibration"]["images"] == 3 and "date" in table
    assert os.path.exists(tmp_path / "plots" / "prf_analytic.png")
    assert 0 <= api.auto_noise_fraction(table, 3.0) <= 1
    assert calibrate.main(argv) == 2  # exists: refuses without --overwrite
    assert calibrate.main(argv + ["--overwrite", "--data", image_folder, "/x/CSet14"]) == 2  # evaluation sets refused
    # The evaluation protocol's framing and LR, recorded in the table.
    assert calibrate.main(argv + ["--overwrite", "--framing", "paper", "--degradation", "pil"]) == 0
    cal = json.load(open(out))["calibration"]
    assert (cal["framing"], cal["degradation"], cal["data"]) == ("paper", "pil", [os.path.relpath(image_folder, calibrate.REPO)])


def test_calibrate_consistent_mode_is_stored_beside_the_plain_table(tiny_model_dir, image_folder, tmp_path):
    import calibrate
    from diffsr_jax import api

    ckpt = tiny_model_dir
    out = str(tmp_path / "prf.json")
    base = ["--checkpoint", ckpt, "--data", image_folder, "--images", "2", "--crop", "32", "--scales", "2", "4",
            "--out", out, "--steps", "2", "--t-grid", "0.1", "0.5"]
    assert calibrate.main(base + ["--consistency", "1"]) == 2          # needs a plain table first
    assert calibrate.main(base + ["--rule", "analytic"]) == 0
    plain = json.load(open(out))
    assert calibrate.main(base + ["--consistency", "1", "--rule", "analytic"]) == 2  # analytic can't
    assert calibrate.main(base + ["--consistency", "1"]) == 0
    table = json.load(open(out))
    cons = table["modes"]["consistent"]
    assert table["t"] == plain["t"] and cons["options"]["consistency"] == 1.0 and cons["rule"] == "empirical-lpips"
    assert set(cons["t"]) <= {0, 10, 50} and len(cons["metrics"]["psnr"]) == 2
    assert [t in tied for t, tied in zip(cons["t_best"], cons["t_tied"])] == [True, True]  # t* ties with itself
    assert cons["pick"] == "lpips-psnr" and cons["psnr_weight"] == calibration.DEFAULT_PSNR_WEIGHT
    m = cons["metrics"]
    assert cons["t"] == calibration.weighted_steps(cons["metrics_t"], m["lpips"], m["psnr"], calibration.DEFAULT_PSNR_WEIGHT)
    assert calibrate.main(base + ["--consistency", "1"]) == 2          # already there: needs --overwrite
    assert noise_table.mode_json(table, True) is cons and noise_table.mode_json(table, False) is table
    assert calibrate.main(base + ["--rule", "analytic", "--overwrite"]) == 0
    assert json.load(open(out))["modes"]["consistent"] == cons        # re-calibrating plain keeps modes
    assert calibrate.main(base + ["--consistency", "1", "--overwrite", "--tolerance", "0.01"]) == 2  # needs argmin
    assert calibrate.main(base + ["--consistency", "1", "--overwrite", "--pick", "argmin"]) == 0
    argmin = json.load(open(out))["modes"]["consistent"]
    assert argmin["pick"] == "argmin" and argmin["t"] == argmin["t_best"] == cons["t_best"]
    # --repick: no sweep, the stored measurements re-picked (in place only with --overwrite; the
    # analytic plain table is left as it is).
    assert calibrate.main(["--repick", out, "--pick", "one-se"]) == 2
    assert calibrate.main(["--repick", out, "--pick", "one-se", "--overwrite"]) == 0
    assert json.load(open(out))["rule"] == "analytic"
    one_se = json.load(open(out))["modes"]["consistent"]
    assert one_se["pick"] == "one-se" and one_se["t"] == [min(tied) for tied in one_se["t_tied"]]
    assert calibrate.main(["--repick", out, "--overwrite", "--pick", "argmin", "--psnr-weight", "0.1"]) == 2
    assert calibrate.main(["--repick", out, "--out", str(tmp_path / "re.json"), "--psnr-weight", "0"]) == 0
    assert json.load(open(tmp_path / "re.json"))["modes"]["consistent"]["t"] == cons["t_best"]  # k = 0: argmin


def test_calibrate_psnr_floor_pick_reads_a_reference_of_the_same_protocol(tiny_model_dir, image_folder, tmp_path):
    import calibrate

    ref, out = str(tmp_path / "ref.json"), str(tmp_path / "prf.json")
    base = ["--checkpoint", tiny_model_dir, "--data", image_folder, "--images", "2", "--crop", "32",
            "--scales", "2", "4", "--steps", "1", "--t-grid", "0.1", "0.5"]
    assert calibrate.main(base + ["--out", ref]) == 0
    assert calibrate.main(base + ["--out", ref, "--consistency", "1"]) == 0
    assert calibrate.main(base + ["--out", out, "--pick", "psnr-floor"]) == 2                  # no reference
    assert calibrate.main(base + ["--out", out, "--psnr-floor-from", ref]) == 2                # wrong pick
    assert calibrate.main(base + ["--out", out, "--pick", "psnr-floor", "--psnr-floor-from", ref,
                                  "--seed", "1"]) == 2                                          # other crops
    assert calibrate.main(base + ["--out", out, "--pick", "psnr-floor", "--psnr-floor-from", ref,
                                  "--scales", "3"]) == 2                                        # scale missing
    # The use it exists for: another sampler held to the reference's PSNR.
    quad = ["--sampler", "ddim-quad", "--pick", "psnr-floor", "--psnr-floor-from", ref]
    assert calibrate.main(base + ["--out", out] + quad) == 0
    assert calibrate.main(base + ["--out", out, "--consistency", "1"] + quad) == 0
    reference, table = json.load(open(ref)), json.load(open(out))
    assert reference["calibration"]["sampler"] == "ddim" and table["calibration"]["sampler"] == "ddim-quad"
    assert table["modes"]["consistent"]["calibration"]["sampler"] == "ddim-quad"
    for mode, r in ((table, reference), (table["modes"]["consistent"], reference["modes"]["consistent"])):
        assert mode["pick"] == "psnr-floor" and mode["psnr_floor_from"].endswith("ref.json")
        assert mode["psnr_floor"] == pytest.approx(calibration.reference_floor(r, [2.0, 4.0]), abs=1e-5)
        m = mode["metrics"]
        assert mode["psnr_floor_slack"] == calibration.DEFAULT_PSNR_FLOOR_SLACK and mode["monotone_in_scale"] is True
        assert mode["t"] == calibration.floor_steps(mode["metrics_t"], m["lpips"], m["psnr"], mode["psnr_floor"],
                                            slack=mode["psnr_floor_slack"], scales=mode["scales"])
        assert mode["t"] == sorted(mode["t"])                           # scales 2, 4: never less noise at 4x
    # --repick keeps the stored floor (and its source) or takes a new reference's.
    assert calibrate.main(["--repick", out, "--pick", "psnr-floor", "--out", str(tmp_path / "a.json")]) == 0
    assert json.load(open(tmp_path / "a.json")) == table
    assert calibrate.main(["--repick", out, "--pick", "psnr-floor", "--psnr-floor-from", ref,
                           "--out", str(tmp_path / "b.json")]) == 0
    assert json.load(open(tmp_path / "b.json"))["psnr_floor_from"].endswith("ref.json")
    # A slack is the psnr-floor pick's only, finite and >= 0; --repick stores the one it is given.
    assert calibrate.main(["--repick", out, "--pick", "one-se", "--psnr-floor-slack", "0.1",
                           "--out", str(tmp_path / "c.json")]) == 2
    assert calibrate.main(["--repick", out, "--pick", "psnr-floor", "--psnr-floor-slack", "-1",
                           "--out", str(tmp_path / "c.json")]) == 2
    assert calibrate.main(["--repick", out, "--pick", "psnr-floor", "--psnr-floor-slack", "100",
                           "--out", str(tmp_path / "c.json")]) == 0
    wide = json.load(open(tmp_path / "c.json"))
    for mode in (wide, wide["modes"]["consistent"]):
        m = mode["metrics"]
        assert mode["psnr_floor_slack"] == 100.0 and mode["t"] == calibration.floor_steps(
            mode["metrics_t"], m["lpips"], m["psnr"], [0.0, 0.0], scales=mode["scales"])
    # Unconstrained (--no-monotone-in-scale): each scale's LPIPS argmin; the stored flag goes.
    assert calibrate.main(["--repick", out, "--pick", "psnr-floor", "--psnr-floor-slack", "100",
                           "--no-monotone-in-scale", "--out", str(tmp_path / "d.json")]) == 0
    free = json.load(open(tmp_path / "d.json"))
    for mode in (free, free["modes"]["consistent"]):
        m = mode["metrics"]
        assert "monotone_in_scale" not in mode and mode["t"] == [int(mode["metrics_t"][i]) for i in
                                                                 np.argmin(np.round(m["lpips"], 4), axis=1)]
    assert calibrate.main(["--repick", out, "--pick", "one-se", "--monotone-in-scale",
                           "--out", str(tmp_path / "e.json")]) == 2             # psnr-floor's only


def test_calibrate_default_steps_keep_the_checkpoints_current_table(tmp_path):
    import calibrate
    from diffsr_jax import api

    assert calibrate._current_steps(str(tmp_path)) == calibrate.DEFAULT_STEPS          # no table
    (tmp_path / "prf.json").write_text(json.dumps({"calibration": {"steps": 7}}))
    assert calibrate._current_steps(str(tmp_path)) == 7
    (tmp_path / "prf.json").write_text(json.dumps({"scales": [2.0]}))                   # older table
    assert calibrate._current_steps(str(tmp_path)) == calibrate.DEFAULT_STEPS
    bundled = loading.read_noise_table(api.DEFAULT_CHECKPOINT).raw["calibration"]["steps"]
    assert calibrate._current_steps(api.DEFAULT_CHECKPOINT) == bundled


def test_shipped_table_t_star_grows_with_scale():
    from diffsr_jax import api

    table = loading.read_noise_table(api.DEFAULT_CHECKPOINT).raw
    for mode, strictly in ((table, True), (table["modes"]["consistent"], False)):
        order = np.argsort(mode["scales"])
        t = np.asarray(mode["t"])[order]
        lpips = np.asarray(mode["metrics"]["lpips"])[order]
        grid = list(mode["metrics_t"])
        for i in np.flatnonzero(np.diff(t) < 0) + 1:
            # t may only fall with scale where the pick chose between steps the calibration cannot
            # tell apart: the step-70 800 plain table ships 4x at 0.01 T after 2.7x at 0.025 T, and
            # at 4x those two differ by 0.0002 mean LPIPS (0.4086 vs 0.4088; the PSNR floor rules
            # out more noise). A larger drop would mean a broken sweep or mis-ordered scales.
            gap = abs(lpips[i, grid.index(t[i])] - lpips[i, grid.index(t[i - 1])])
            assert gap < 1e-3, (mode["t"], i, gap)
            assert not mode.get("monotone_in_scale"), mode["t"]   # a monotone pick never falls
        # Plain: more noise pays at larger scales. Consistent (measured): one t* can be best at every
        # scale (0.1 T for the step-7000 model, 0.2 T argmin for steps 16 000 and 21 700, which
        # ship 0.05 / 0.1 / 0.2 / 0.2 T by the lpips-psnr rule), so only monotonicity (up to the ties
        # above) is required of it.
        assert (t[-1] > t[0]) or not strictly, mode["t"]
        assert mode["noise_fraction"] == [x / table["T"] for x in mode["t"]]


def test_calibrate_cli_splits_the_sweep_over_cpu_devices_with_the_same_table(tiny_model_dir, image_folder, tmp_path):
    """calibrate.py in a fresh process with --cpu-devices 2 (the grid split over two CPU devices)
    measures what the one-device run here measures; a bad count is a usage error."""
    import calibrate

    base = ["--checkpoint", tiny_model_dir, "--data", image_folder, "--images", "2", "--crop", "32",
            "--scales", "2", "4", "--steps", "2", "--t-grid", "0.1", "0.5", "--pick", "argmin"]
    one = str(tmp_path / "one.json")
    assert calibrate.main(base + ["--out", one, "--cpu-devices", "1"]) == 0
    assert calibrate.main(base + ["--out", str(tmp_path / "bad.json"), "--cpu-devices", "zero"]) == 2
    two = str(tmp_path / "two.json")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, os.path.join(calibrate.REPO, "calibrate.py"), *base, "--out", two,
                           "--cpu-devices", "2"], cwd=calibrate.REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep split over 2 cpu devices" in proc.stderr
    a, b = json.load(open(one)), json.load(open(two))
    assert a["t"] == b["t"]
    for k in ("psnr", "lpips"):
        np.testing.assert_allclose(np.asarray(a["metrics"][k], float), np.asarray(b["metrics"][k], float),
                                   atol=2e-3)


def test_calibrate_adds_a_noise_axis_that_never_lowers_t(tiny_model_dir, image_folder, tmp_path):
    import calibrate

    out = str(tmp_path / "prf.json")
    base = ["--checkpoint", tiny_model_dir, "--data", image_folder, "--images", "2", "--crop", "32", "--scales", "2", "4",
            "--out", out, "--steps", "2", "--t-grid", "0.1", "0.3", "0.5"]
    assert calibrate.main(base + ["--rule", "analytic"]) == 0
    assert calibrate.main(base + ["--consistency", "1"]) == 0
    import shutil

    ckpt = str(tmp_path / "ckpt")
    shutil.copytree(tiny_model_dir, ckpt)
    shutil.copy(out, os.path.join(ckpt, "prf.json"))
    axis = base[:1] + [ckpt] + base[2:] + ["--consistency", "1", "--noise-levels", "20", "8"]
    assert calibrate.main(axis) == 0
    table = json.load(open(out))
    cons = table["modes"]["consistent"]
    assert table["format_version"] == noise_table.FORMAT_VERSION and cons["noise_levels_255"] == [8.0, 20.0]
    rows = np.asarray([cons["noise_fraction"]] + cons["noise_fraction_by_level"])
    assert rows.shape == (3, 2) and np.all(np.diff(rows, axis=0) >= 0)          # more noise: never less t
    assert np.all(np.diff(rows, axis=1) >= 0)                                   # larger scale: never less t
    assert table["t"] == json.load(open(os.path.join(ckpt, "prf.json")))["t"]   # the plain table is untouched
    mode = noise_table.parse(table).mode(True)
    assert mode.fraction_at(2.0, 20 / 255) == pytest.approx(rows[2, 0])
    shutil.copy(out, os.path.join(ckpt, "prf.json"))
    assert calibrate.main(axis) == 2                                            # exists: needs --overwrite
