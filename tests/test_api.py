import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import api, checkpointing, defaults, pipeline


def smooth_image(h, w, seed=0):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    return np.clip(np.stack([yy, xx, 0.5 + 0.4 * np.sin(8 * xx * yy)], -1) + 0.02 * rng.normal(size=(h, w, 3)),
                   0, 1).astype(np.float32)


def test_tile_starts_cover_with_overlap():
    for length, tile, ov in [(100, 32, 8), (32, 32, 8), (20, 32, 8), (65, 16, 4)]:
        starts = pipeline.tile_starts(length, tile, ov)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[0] == 0
        assert all(b - a <= tile - ov for a, b in zip(starts, starts[1:]))


def test_blending_constant_tiles_is_exact():
    placed = [(y, x, w, np.full(w.shape + (3,), 0.25, np.float32))
              for y, x, w in pipeline.tile_windows(50, 70, 16, 6)]
    np.testing.assert_allclose(pipeline.blend_tiles((50, 70), 3, placed), 0.25, atol=1e-6)


def test_noise_zero_is_plain_bicubic(model):
    img = smooth_image(12, 16)
    out, info = api.upscale_array(img, (24, 32), model=model, noise=("step", 0), consistency=0.0,
                                  colour_fix="none")
    ref = np.asarray(pipeline.upsample(jnp.asarray(img[None] * 2 - 1), (24, 32)))[0]
    np.testing.assert_allclose(out, (ref + 1) / 2, atol=1e-6)
    assert info["t"] == 0


def test_output_size_range_and_determinism(model):
    img = smooth_image(10, 14)
    a, info = api.upscale_array(img, (27, 37), model=model, noise=("fraction", 0.3), steps=3, seed=1)
    b, _ = api.upscale_array(img, (27, 37), model=model, noise=("fraction", 0.3), steps=3, seed=1)
    assert a.shape == (27, 37, 3) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert info["t"] == 30 and info["steps"] == 3  # tiny model: T = 100


def test_tiled_equals_untiled_within_tolerance(model):
    """Tiles differ from the whole image only through the network's borders and GroupNorm's
    per-tile statistics; the blend must keep that far below what the diffusion itself changes."""
    img = smooth_image(24, 20)
    kw = dict(model=model, noise=("fraction", 0.2), steps=2, seed=0)
    whole, _ = api.upscale_array(img, (48, 40), tile=0, **kw)
    tiled, info = api.upscale_array(img, (48, 40), tile=24, tile_overlap=12, **kw)
    bicubic, _ = api.upscale_array(img, (48, 40), tile=0, model=model, noise=("step", 0))
    assert info["tile"] == 24
    diff = np.abs(whole - tiled)
    assert diff.mean() < 0.02 and diff.max() < 0.15
    assert diff.mean() < 0.25 * np.abs(whole - bicubic).mean()


def test_auto_noise_interpolates_in_log_scale():
    table = {"scales": [2, 4, 8], "noise_fraction": [0.2, 0.4, 0.6]}
    assert api.auto_noise_fraction(table, 2) == pytest.approx(0.2)
    assert api.auto_noise_fraction(table, 2 ** 1.5) == pytest.approx(0.3)
    assert api.auto_noise_fraction(table, 1.2) == pytest.approx(0.2)  # clamped below
    assert api.auto_noise_fraction(table, 16) == pytest.approx(0.6)   # clamped above


def test_default_steps_follow_the_modes_calibrated_table(model):
    """A table's t* holds for the step count it was calibrated with, so that count is the default;
    each mode reads its own table, and a table that does not record one falls back."""
    import dataclasses

    table = {"scales": [2, 4], "noise_fraction": [0.1, 0.2], "calibration": {"steps": 3},
             "modes": {"consistent": {"scales": [2, 4], "noise_fraction": [0.2, 0.3], "calibration": {"steps": 4}}}}
    m = dataclasses.replace(model, noise_table=table)
    assert api.default_steps(m) == 3 and api.default_steps(m, consistent=True) == 4
    img = smooth_image(8, 8)
    _, plain = api.upscale_array(img, (16, 16), model=m, consistency=0.0)
    _, cons = api.upscale_array(img, (16, 16), model=m)
    _, given = api.upscale_array(img, (16, 16), model=m, steps=1)
    assert (plain["steps"], cons["steps"], given["steps"]) == (3, 4, 1)
    bare = dataclasses.replace(model, noise_table={"scales": [2], "noise_fraction": [0.1]})
    assert api.default_steps(bare, consistent=True) == defaults.DEFAULT_STEPS


def test_default_sampler_follows_the_modes_calibrated_table(model):
    import dataclasses

    table = {"scales": [2, 4], "noise_fraction": [0.1, 0.2], "calibration": {"steps": 2, "sampler": "ddim-quad"},
             "modes": {"consistent": {"scales": [2, 4], "noise_fraction": [0.2, 0.3], "calibration": {"steps": 2}}}}
    m = dataclasses.replace(model, noise_table=table)
    assert api.default_sampler(m) == "ddim-quad" and api.default_sampler(m, consistent=True) == defaults.DEFAULT_SAMPLER
    img = smooth_image(8, 8)
    _, plain = api.upscale_array(img, (16, 16), model=m, consistency=0.0)
    _, given = api.upscale_array(img, (16, 16), model=m, sampler="ddpm")
    assert (plain["sampler"], given["sampler"]) == ("ddim-quad", "ddpm")
    with pytest.raises(ValueError, match="sampler"):
        api.upscale_array(img, (16, 16), model=m, sampler="euler")
    odd = dataclasses.replace(model, noise_table=dict(table, calibration={"sampler": "heun"}))
    assert api.default_sampler(odd) == defaults.DEFAULT_SAMPLER


def test_upscale_keeps_dtype_and_channels(model):
    gray = (smooth_image(8, 12)[..., 0] * 255).astype(np.uint8)
    out = api.upscale(gray, "2x", model=model, noise=0.1, steps=2)
    assert out.shape == (16, 24) and out.dtype == np.uint8
    rgba = np.concatenate([smooth_image(8, 8), np.full((8, 8, 1), 0.5, np.float32)], -1)
    rgba16 = (rgba * 65535).astype(np.uint16)
    out = api.upscale(rgba16, "2x", model=model, noise=0.1, steps=2)
    assert out.shape == (16, 16, 4) and out.dtype == np.uint16
    np.testing.assert_allclose(out[..., 3] / 65535, 0.5, atol=1e-3)  # alpha by plain resize


def test_missing_and_corrupt_checkpoints(tmp_path, tiny_model_dir):
    with pytest.raises(checkpointing.CheckpointError, match="not found"):
        api.load_model(str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text("{not json")
    with pytest.raises(checkpointing.CheckpointError, match="corrupt"):
        api.load_model(str(bad))
    (bad / "model.json").write_text(open(os.path.join(tiny_model_dir, "model.json")).read())
    (bad / "params").mkdir()
    (bad / "params" / "garbage").write_bytes(b"\0" * 10)
    with pytest.raises(checkpointing.CheckpointError, match="cannot restore"):
        api.load_model(str(bad))


def test_pure_core_vmaps_over_t_and_traces_once(model):
    lr = jnp.asarray(smooth_image(8, 8)[None] * 2 - 1)
    traces = []

    def one(t):
        traces.append(1)
        return pipeline.diffsr_from_lr(model.model, model.params, model.schedule, lr, t, jax.random.key(0),
                                       out_hw=(16, 16), num_steps=3)[0]

    ts = jnp.array([0, 10, 40, 90])
    grid = jax.jit(jax.vmap(one))(ts)
    assert grid.shape == (4, 16, 16, 3) and len(traces) == 1
    np.testing.assert_allclose(grid[0], pipeline.upsample(lr, (16, 16))[0], atol=1e-6)  # t = 0: bicubic
    np.testing.assert_allclose(grid[2], jax.jit(one)(ts[2]), atol=1e-4)


def test_cover_crops_alpha_with_the_image(model):
    """Alpha must follow the same resize-then-crop as RGB (a horizontal ramp stays aligned)."""
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (10, 1))
    rgba = np.concatenate([np.repeat(ramp[..., None], 3, -1), ramp[..., None]], -1)
    out = api.upscale(rgba, "40x40", fit="cover", model=model, noise=0.0)
    assert out.shape == (40, 40, 4)
    np.testing.assert_allclose(out[..., 3], out[..., :3].mean(-1), atol=0.02)


def test_upscale_batch_equals_one_image_at_a_time(model, monkeypatch):
    """Images of different input sizes going to one output size are denoised in one compiled call
    (padded to a power of two), and each output is the one upscale_array gives it alone."""
    imgs = [smooth_image(12, 12, seed=0), smooth_image(12, 12, seed=1), smooth_image(8, 12, seed=2)]
    calls = []
    real = api.pipeline.restore_batch_jit
    monkeypatch.setattr(api.pipeline, "restore_batch_jit", lambda *a, **k: calls.append(a[3].shape) or real(*a, **k))
    for kw in (dict(consistency=0.0, colour_fix="none"), dict()):     # plain, and the default mode
        calls.clear()
        batch = api.upscale_batch(imgs, (24, 24), model=model, steps=2, **kw)
        assert calls == [(4, 24, 24, 3)]  # 3 images, one call, padded to 4
        for img, (out, info) in zip(imgs, batch):
            alone, alone_info = api.upscale_array(img, (24, 24), model=model, steps=2, **kw)
            assert out.shape == (24, 24, 3) and np.abs(out - alone).max() < 1e-4
            assert (info["t"], info["steps"], info["consistency"]) == (alone_info["t"], alone_info["steps"],
                                                                       alone_info["consistency"])
    # t = 0 and tiled outputs go one image at a time, with the same results
    zero = api.upscale_batch(imgs[:2], (24, 24), model=model, noise="t=0")
    assert all(np.abs(o - api.upscale_array(i, (24, 24), model=model, noise="t=0")[0]).max() < 1e-6
               for i, (o, _) in zip(imgs, zero))
    tiled = api.upscale_batch(imgs[:1], (24, 24), model=model, steps=2, tile=16, tile_overlap=4)
    assert tiled[0][1]["tile"] == 16
