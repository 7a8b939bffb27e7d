"""A seconds-fast config for tests: a few thousand parameters, 16 px crops, T = 100."""

from configs import default


def get_config():
    c = default.get_config()
    c.model.update(dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_middle_blocks=1,
                        pixel_unshuffle=2, norm_groups=4))
    c.schedule.T = 100
    c.data.update(dict(sources=(), data_dir="tfds", crop_size=16, max_downscale=2.0, rot90=True))
    c.train.update(dict(batch_size=4, num_steps=4, learning_rate=1e-3, warmup_steps=2, grad_clip=1.0,
                        ema_decay=0.99, save_every=2, log_every=1, keep_checkpoints=2))
    return c
