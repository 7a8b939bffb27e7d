"""The default model's config: a compact UNet that trains usefully on 2 CPU cores in hours.

Differences from the paper's setup (configs/default.py), each chosen to make CPU steps count:
- 2×2 pixel-unshuffle stem / pixel-shuffle head: convolutions run on 1/4 of the pixels;
- narrower widths (base 32, multipliers 1/2/4; 2.5M parameters; step time: benchmarks/unet_speed.py);
- 64 px crops drawn at random downscales up to 4× (training crops then look like the downscaled
  photos that evaluation feeds the model), flips and 90° rotations;
- lr 2e-4 with 200 warm-up steps, grad clip 1, EMA 0.999 with warm-up (short runs);
- 80% of training steps drawn from t ≤ 0.7T, the range Diff-SR uses;
- conv weight gradients "auto": the run's first steps race XLA's own against one im2col GEMM
  (models/conv.py, autotune.py) and keep the faster: which wins depends on the CPU.
- one XLA CPU device per core (configs/default.py's mesh.cpu_devices="auto"), the batch split over
  them: faster steps than JAX's single CPU device (benchmarks/scaling.py).
Training data: ../shared/data/CBSD68 + CSun_Hays80 + CBSD432, 580 photos (never the evaluation
sets). At equal steps from the bundled model, 580 photos beat its 148 (CBSD68 + CSun_Hays80) on
held-out x0-PSNR and on Table 1's default-mode PSNR (model card, "Data and weighting study"); the
bundled model itself was trained on the 148 (its commands override data.sources).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.model.update(dict(base_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1,
                        pixel_unshuffle=2, norm_groups=16))
    c.data.update(dict(sources=("../shared/data/CBSD68", "../shared/data/CSun_Hays80", "../shared/data/CBSD432"),
                       data_dir="runs/tfds", crop_size=64, max_downscale=4.0, rot90=True))
    c.train.update(dict(batch_size=32, num_steps=100_000, learning_rate=2e-4, warmup_steps=200,
                        grad_clip=1.0, ema_decay=0.999, t_low_fraction=0.7, t_low_prob=0.8,
                        save_every=100, log_every=10, conv_weight_grad="auto"))
    return c
