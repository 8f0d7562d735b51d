"""DB-ResNet-18 on CUDA: inference images/s at 736 (batch 1 and 16, fp32 and fp16) and training
images/s, against the paper's 48 FPS (1080Ti, DB-ResNet-18, ICDAR 2015 at 736).

    python bench/bench_cuda.py [--repeats 5] [--iters 20] [--train-batch 16]

Skips with a message when no CUDA device is present. Inference: ``dbcli.backends.torch_backend.TorchBackend``'s
model (BatchNorm folded, channels_last, ``inference_mode``), input 736x1312 (a 1280x720 ICDAR 2015
image at short side 736), network only and network + dbcli post-processing (box mode, on an
ICDAR-like synthetic map, as the paper's FPS includes post-processing). Training: forward, DB loss,
backward and SGD step on 640x640 crops (channels_last, fp16 autocast + GradScaler for the AMP row).
Weights are random (speed does not depend on them). Figures are medians over ``--repeats`` timed
runs of ``--iters`` iterations each, synchronised with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
from bench import synthetic
from bench.common import header, median, print_table, spread

PAPER_FPS = 48.0
H, W = 736, 1312


def timed(fn, iters: int, repeats: int, sync) -> list[float]:
    """Seconds per iteration, ``repeats`` samples of ``iters`` iterations each (after a warm-up)."""
    for _ in range(max(3, iters // 4)):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / iters)
    return samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--device", default="cuda", help="cuda (cpu: only to smoke-test this script, tiny sizes)")
    args = ap.parse_args(argv)

    import torch

    header(f"DB-{args.arch} on {args.device}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("# skipped: no CUDA device (torch.cuda.is_available() is False); run this on a GPU machine")
        return 0

    from dbcli.models import DBNet, ModelConfig
    from dbcli.models.fold import fold_batchnorm
    from dbcli.postprocess.boxes import boxes_from_prob_map
    from dbcli.training.losses import db_loss

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    half = torch.float16 if cuda else torch.bfloat16
    half_name = "fp16" if cuda else "bf16"
    h, w, crop, batches = (H, W, 640, (1, 16)) if cuda else (64, 96, 64, (1, 2))  # cpu: smoke test
    torch.manual_seed(0)
    model = DBNet(ModelConfig(args.arch)).eval()
    model = fold_batchnorm(model).to(device).to(memory_format=torch.channels_last)
    rows = []
    prob_map = synthetic.prob_map(np.random.default_rng(0), H, W)[0]

    for batch in batches:
        x = torch.randn(batch, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
        for dtype in (torch.float32, half):
            def step(x=x, dtype=dtype):
                with torch.inference_mode(), torch.autocast(device.type, dtype=half, enabled=dtype == half):
                    return model(x)["prob"]

            samples = timed(step, args.iters, args.repeats, sync)
            ips = batch / median(samples)
            label = "fp32" if dtype == torch.float32 else half_name
            rows.append([f"inference, network only, batch {batch}, {label}", f"{ips:.1f}",
                         f"{ips / PAPER_FPS:.2f}x", spread(samples)])
            if batch == 1:
                def full(step=step):
                    step()[0, 0].float().cpu().numpy()  # the map comes back to the host, as in detect
                    boxes_from_prob_map(prob_map, 1280, 720)  # an ICDAR-like map (weights are random)

                samples = timed(full, args.iters, args.repeats, sync)
                ips = 1 / median(samples)
                rows.append([f"inference + post-processing, batch 1, {label}", f"{ips:.1f}",
                             f"{ips / PAPER_FPS:.2f}x", spread(samples)])
        del x
        if cuda:
            torch.cuda.empty_cache()

    train_model = DBNet(ModelConfig(args.arch)).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(train_model.parameters(), lr=0.007, momentum=0.9, weight_decay=1e-4)
    b = args.train_batch
    b = b if cuda else 2
    images = torch.randn(b, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    gt = (torch.rand(b, crop, crop, device=device) > 0.9).float()
    targets = {"gt": gt, "mask": torch.ones_like(gt), "thresh_map": torch.rand_like(gt) * 0.4 + 0.3,
               "thresh_mask": (torch.rand_like(gt) > 0.7).float()}
    for amp in (False, True):
        scaler = torch.amp.GradScaler("cuda", enabled=amp and cuda)

        def train_step(amp=amp, scaler=scaler):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=half, enabled=amp):
                loss = db_loss(train_model(images), targets)["loss"]
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        samples = timed(train_step, max(5, args.iters // 2), args.repeats, sync)
        rows.append([f"training, batch {b} of {crop}x{crop}, {half_name + ' AMP' if amp else 'fp32'}",
                     f"{b / median(samples):.1f}", "", spread(samples)])

    print_table(f"DB-{args.arch} on {torch.cuda.get_device_name(0) if cuda else 'CPU (smoke test)'}, "
                f"input {w}x{h} for inference (median of {args.repeats} runs)",
                ["what", "images/s", "vs paper 48 FPS", "spread"], rows,
                ["the paper's 48 FPS: DB-ResNet-18, ICDAR 2015 at 736, GTX 1080Ti, batch 1, "
                 "including post-processing."])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
