"""Evaluate super-resolution methods with the paper's Table 1 protocol; draw the Fig. 6–8 ablations.

    python evaluate.py                                             # Table 1 + ablations → benchmarks/results
    python evaluate.py --datasets CSet5 --scales 4 --methods bicubic lanczos diffsr --ablations none
    python evaluate.py --methods bicubic "diffsr@t=100" "diffsr@0.3" mypkg.sr:upscale --protocol native
    python evaluate.py --scales 1.6 2.7 3.5 8 --fid-inception classify_image_graph_def.pb

Method names: nearest bicubic lanczos fsrcnn espcn lapsrn diffsr diffsr@<noise> (auto, 0.3, t=100)
diffsr-cons diffsr-cons-colour (any Diff-SR name + "-ens2/4/8": self-ensemble, e.g. diffsr-ens8@t=100),
or module:function with fn(lr_image, target_hw) -> image.
All the work is in diffsr_jax/evaluation.py (methods: eval_methods.py, reports: reports.py) and
diffsr_jax/ablations.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

REPO = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
DEFAULT_METHODS = ["nearest", "bicubic", "lanczos", "fsrcnn", "espcn", "lapsrn", "diffsr",
                   "diffsr-cons", "diffsr-cons-colour"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["CSet5", "CSet14", "CUrban100[1-20]"],
                   help="folders, names under --data-root, or tfds:NAME[/CONFIG][:split]; NAME[a-b] picks images a..b")
    p.add_argument("--data-root", default=os.path.join(SHARED, "data"), help="where dataset names are looked up")
    p.add_argument("--tfds-dir", default=os.path.join(REPO, "runs", "tfds"), help="TFDS data_dir for tfds: datasets")
    p.add_argument("--scales", nargs="+", type=float, default=[2.0, 2.7, 4.0], help="SR factors, any positive numbers")
    p.add_argument("--protocol", choices=["paper", "native"], default="paper",
                   help="paper: centre crop → 256² → bicubic down to round(256/s); native: full image, exact HR size")
    p.add_argument("--limit", type=int, default=None, help="first N images of each dataset")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, help="see the module docstring")
    p.add_argument("--checkpoint", default=None, help="Diff-SR model folder; default: the bundled model")
    p.add_argument("--steps", type=int, default=None, help="Diff-SR DDIM steps (default: the library's)")
    p.add_argument("--seed", type=int, default=0, help="Diff-SR noise seed (same for every image)")
    p.add_argument("--peer-dir", default=os.path.join(SHARED, "peers", "opencv_dnn_superres"),
                   help="OpenCV dnn_superres model files (FSRCNN/ESPCN/LapSRN)")
    p.add_argument("--fid-inception", default=None,
                   help="Inception weights (.pb TF graph or .onnx) for FID; without it FID is 'unavailable'")
    p.add_argument("--fid-layer", default="pool_3", help="feature output name in the Inception graph")
    p.add_argument("--lpips-nets", nargs="+", default=["alex", "vgg"], choices=["alex", "vgg"])
    p.add_argument("--cpu-devices", default="auto", metavar="auto|N",
                   help="on a CPU-only machine, spread each Diff-SR image's rows over this many XLA CPU devices "
                        "(auto = one per core; 1 = JAX's single device); metrics equal to float rounding")
    p.add_argument("--out-dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--name", default="table1", help="stem of the output files")
    p.add_argument("--no-table", action="store_true", help="skip Table 1 (ablations only)")
    p.add_argument("--ablations", nargs="+", default=["fig6", "fig7", "fig8"],
                   help="any of fig6 fig7 fig8, or none")
    p.add_argument("--ablation-dataset", default="CSet5", help="images for the ablations (paper protocol, 256²)")
    p.add_argument("--ablation-limit", type=int, default=None, help="first N images for the ablations")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from diffsr_jax import sharding

    try:  # before anything touches a device; evaluation.run_table uses every local device
        sharding.setup_cpu_devices(args.cpu_devices, note=args.cpu_devices != "auto")
    except ValueError as e:
        sys.exit(f"error: --cpu-devices: {e}")
    from diffsr_jax import ablations, evaluation
    from diffsr_jax.options import InferenceOptions

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if not args.no_table:
            evaluation.run_table(
                datasets=args.datasets, scales=args.scales, methods=args.methods, out_dir=args.out_dir,
                name=args.name, protocol=args.protocol, data_root=args.data_root, tfds_dir=args.tfds_dir,
                limit=args.limit, checkpoint=args.checkpoint, peer_dir=args.peer_dir,
                options=InferenceOptions(steps=args.steps, seed=args.seed), lpips_nets=args.lpips_nets,
                fid_inception=args.fid_inception, fid_layer=args.fid_layer,
                command=f"python evaluate.py {shlex.join(argv)}".rstrip())
        wanted = [a for a in args.ablations if a != "none"]
        if wanted:
            ablations.run_ablations(wanted, dataset=args.ablation_dataset, out_dir=args.out_dir,
                                    data_root=args.data_root, tfds_dir=args.tfds_dir, limit=args.ablation_limit,
                                    checkpoint=args.checkpoint, steps=args.steps, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
