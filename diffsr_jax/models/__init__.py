"""Denoising networks. Built from explicit hyperparameters, never from a whole config object."""

from diffsr_jax.models.unet import UNet, timestep_embedding

MODEL_KEYS = ("base_channels", "channel_mult", "num_res_blocks", "num_middle_blocks",
              "pixel_unshuffle", "norm_groups", "dropout")


def build_unet(dtype=None, conv_weight_grad: str = "xla", **hparams) -> UNet:
    """UNet from a dict of hyperparameters (unknown keys are an error, so typos surface).

    ``dtype`` is the compute dtype (e.g. ``jnp.bfloat16`` on accelerators); params stay float32.
    ``conv_weight_grad`` picks how training computes conv weight gradients (``models/conv.py``);
    like ``dtype`` it is a runtime choice, not a hyperparameter stored with the model.
    """
    unknown = set(hparams) - set(MODEL_KEYS)
    if unknown:
        raise ValueError(f"unknown UNet hyperparameters: {sorted(unknown)}")
    if "channel_mult" in hparams:
        hparams["channel_mult"] = tuple(int(m) for m in hparams["channel_mult"])
    if dtype is not None:
        hparams["dtype"] = dtype
    return UNet(conv_weight_grad=conv_weight_grad, **hparams)


def abstract_params(model: UNet):
    """The model's parameter tree as ShapeDtypeStructs, via ``eval_shape`` (never runs ``init``,
    whose threefry initialisers cost tens of seconds on CPU): what a restore fills in."""
    import jax
    import jax.numpy as jnp

    s = model.total_stride
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, s, s, 3)),
                                             jnp.zeros((1,), jnp.int32))["params"])


__all__ = ["UNet", "build_unet", "abstract_params", "timestep_embedding", "MODEL_KEYS"]
