"""The paper's pre-training setup (Appendix D): 256² crops, 64 base channels with multipliers
2/4/8, three down / two middle / three up blocks, T = 1000 linear β 1e-4 → 0.02, Adam lr 1e-5,
batch 16. ~38M parameters (paper: 35.71M). Meant for a GPU/TPU with DIV2K from TFDS:

    python train.py --config configs/default.py --workdir runs/paper
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict(dict(
        base_channels=64, channel_mult=(2, 4, 8), num_res_blocks=1, num_middle_blocks=2,
        pixel_unshuffle=1, norm_groups=32, dropout=0.0,
    ))
    c.schedule = ml_collections.ConfigDict(dict(name="linear", T=1000, beta_start=1e-4, beta_end=0.02))

    c.data = ml_collections.ConfigDict(dict(
        # One or more local image folders, or "tfds:NAME[/CONFIG][:split]".
        sources=("tfds:div2k/bicubic_x2:train",),
        data_dir="~/tensorflow_datasets",
        crop_size=256,
        max_downscale=1.0,   # 1 = plain HR crops as in the paper
        flip=True,
        rot90=False,
    ))

    c.train = ml_collections.ConfigDict(dict(
        batch_size=16,
        num_steps=500_000,
        learning_rate=1e-5,
        warmup_steps=0,
        lr_decay="constant",  # or "cosine" (to 10% at num_steps) or "cooldown" (see below)
        cooldown_steps=0,     # "cooldown": lr falls linearly to 0 over the last cooldown_steps
        grad_clip=0.0,        # 0 = off
        ema_decay=0.9999,
        ema_warmup=True,      # decay = min(ema_decay, (1+step)/(10+step))
        t_low_fraction=1.0,   # see losses.sample_timesteps
        t_low_prob=0.0,
        compute_dtype="float32",  # "bfloat16" on GPU/TPU
        conv_weight_grad="xla",   # or "gemm" (one im2col GEMM, models/conv.py), or "auto": race both
                                  # on the first steps, keep the faster (CPU; configs/cpu.py)
        save_every=5000,
        keep_checkpoints=3,
        log_every=100,
        init_from="",  # an exported model dir: warm-start params + EMA from it (fresh optimizer)
        branch_from="",  # another run's workdir: start from its full state (optimizer included),
        branch_step=0,   # at this step (0 = its newest); e.g. a cooldown branch of a trunk run
    ))

    # Device mesh (README "Scaling out"): data axis = all devices / model. batch_size is global and
    # must divide by the data axis. model > 1 only pays with shard_params (params, EMA and Adam
    # moments split over the model axis); otherwise those devices repeat the same work.
    # cpu_devices: on a CPU-only machine, how many XLA CPU devices to split the batch over: "auto" =
    # one per usable core (lowered to a divisor of batch_size), 1.12-1.58x faster train steps on 2
    # cores than JAX's single CPU device (sharding.cpu_device_count); "1" = JAX's default. Ignored on
    # GPU/TPU (the mesh is the accelerators) and when XLA_FLAGS already force a CPU device count.
    c.mesh = ml_collections.ConfigDict(dict(model=1, shard_params=False, cpu_devices="auto"))
    return c
