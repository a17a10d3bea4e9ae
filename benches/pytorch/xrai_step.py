#!/usr/bin/env python3
"""PyTorch twin of `cargo bench --bench xrai`: one X-RAI training step of the default
configuration (batch 64, 32×32 images, widths 16-32-64-128, 8 heads, 41³ voxel volume) and its
parts, on the CPU, at a chosen thread count.

    python3 benches/pytorch/xrai_step.py --threads 1
    python3 benches/pytorch/xrai_step.py --threads 2 --json

Synthetic inputs: the timings do not depend on the data. Needs numpy and torch only.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The default XraiConfig (src/xrai/config.rs).
BATCH = 64
SIDE = 32
WIDTHS = (16, 32, 64, 128)
HIDDEN = 256
HEADS = 8
M = 41  # voxels per side of the amplitude volume (odd, origin on the centre voxel)
LR_ENCODER = 1e-3
LR_VOLUME = 1e-2
MEAN_HEAD_WEIGHT = 0.02
UNIFORMITY_WEIGHT = 0.005
BN_EPS = 1e-5


class Encoder(nn.Module):
    """VGG-style CNN (conv 3×3 no bias + batch norm + ReLU + 2×2 max pool per block), an MLP to
    K 6D vectors (src/xrai/encoder.rs)."""

    def __init__(self, widths=WIDTHS, side=SIDE, hidden=HIDDEN, heads=HEADS):
        super().__init__()
        layers, c = [], 1
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w, eps=BN_EPS), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        feat = c * (side >> len(widths)) ** 2  # 128 × 2 × 2 = 512
        self.fc = nn.Linear(feat, hidden)
        self.out = nn.Linear(hidden, heads * 6)
        self.heads = heads
        # Kaiming-normal (fan-in) weights as in train.rs::init_encoder; biases keep torch's
        # default ±1/√fan-in. Timings do not depend on the values.
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x):
        h = self.features(x).flatten(1)
        return self.out(F.relu(self.fc(h))).view(x.shape[0], self.heads, 6)


def _normalize(v):
    return v / torch.sqrt((v * v).sum(-1, keepdim=True) + 1e-12)


def sixd_to_rotation(x):
    """Zhou et al. 2019: [N, 6] → [N, 3, 3] with columns b1, b2, b3 (Gram–Schmidt + cross)."""
    a1, a2 = x[:, :3], x[:, 3:]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - b1 * (b1 * a2).sum(-1, keepdim=True))
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def trilinear_grid_sample(vol, coords):
    """Trilinear sampling of `vol` [M, M, M] ([z][y][x]) at `coords` [N, P, 3] = (x, y, z)
    in voxel units relative to the centre voxel; zero outside. → [N, P]."""
    n, p, _ = coords.shape
    centre = (vol.shape[0] - 1) / 2
    grid = (coords / centre).reshape(1, 1, 1, n * p, 3)  # align_corners: ±1 = centres of the end voxels
    out = F.grid_sample(vol[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(n, p)


def trilinear_gather(vol, coords):
    """The same sampling written with gathers (like decoder.rs::trilinear_generic), so autograd
    derives the backward (an index_add scatter into the volume)."""
    m = vol.shape[0]
    n, p, _ = coords.shape
    c = coords.reshape(-1, 3) + (m - 1) / 2
    fl = c.detach().floor()
    fr = c - fl
    fl = fl.long()
    flat = vol.reshape(-1)
    acc = 0
    for k in range(8):
        o = ((k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1)
        w = 1
        idx = 0
        valid = torch.ones_like(fl[:, 0], dtype=torch.bool)
        for a in (2, 1, 0):
            wa = fr[:, a] if o[a] else 1 - fr[:, a]
            w = w * wa
            ia = fl[:, a] + o[a]
            valid = valid & (ia >= 0) & (ia < m)
            idx = idx * m + ia.clamp(0, m - 1)
        acc = acc + flat[idx] * (w * valid)
    return acc.reshape(n, p)


class Decoder(nn.Module):
    """Learned 41³ amplitude volume, Friedel-symmetrised, sampled at R s_p (src/xrai/decoder.rs)."""

    def __init__(self, s_grid, pixel_weight, sampler):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.volume = nn.Parameter(torch.rand(M, M, M, generator=g))
        self.register_buffer("s_grid", s_grid)  # [3, P], voxel units, relative to the centre
        self.register_buffer("pixel_weight", pixel_weight[None])  # [1, P]
        self.sample = trilinear_grid_sample if sampler == "grid_sample" else trilinear_gather

    def forward(self, rots):
        coords = (rots @ self.s_grid).transpose(1, 2)  # [N, P, 3]
        vol = 0.5 * (self.volume + self.volume.flip(0, 1, 2))
        return self.sample(vol, coords) * self.pixel_weight


def detector_points(kind, side=SIDE, m=M, frac=0.9, seed=0):
    """[3, P] s-vectors in voxel units with max |s| = frac × the half extent, so every rotated
    point lies inside the grid. 'random': uniform in the ball, fixed seed. 'ewald': the pixel
    centres of a flat detector mapped onto an Ewald-sphere cap, row-major (the access pattern of
    the real geometry; Candle's spans |s| up to 1/1.02 of the half extent)."""
    half = (m - 1) / 2
    p = side * side
    if kind == "random":
        rng = np.random.default_rng(seed)
        v = rng.standard_normal((3, p))
        v /= np.linalg.norm(v, axis=0, keepdims=True)
        r = rng.random(p) ** (1 / 3)
        s = v * r
    else:
        u = (np.arange(side) + 0.5) / side * 2 - 1
        yy, xx = np.meshgrid(u, u, indexing="ij")
        d = np.stack([xx.ravel(), yy.ravel(), np.full(p, 1.2)])  # detector at distance 1.2 × half width
        kout = d / np.linalg.norm(d, axis=0, keepdims=True)
        s = kout - np.array([[0.0], [0.0], [1.0]])  # s = k_out − k_in, |k| = 1
    s = s / np.linalg.norm(s, axis=0).max() * frac * half
    return torch.tensor(s, dtype=torch.float32)


class Model:
    def __init__(self, sampler, points, seed=0):
        torch.manual_seed(seed)
        p = SIDE * SIDE
        self.encoder = Encoder()
        u = np.linspace(-1, 1, SIDE)
        r2 = (u[:, None] ** 2 + u[None, :] ** 2).ravel()
        pixel_weight = torch.tensor(np.sqrt(1 / (1 + r2) ** 1.5 / np.mean(1 / (1 + r2) ** 1.5)), dtype=torch.float32)
        self.decoder = Decoder(detector_points(points), pixel_weight, sampler)
        # Fixed input statistics (train.rs: standardise each pixel; loss normaliser = mean t²).
        self.mean = torch.rand(1, 1, SIDE, SIDE) + 0.5
        self.inv_std = 1 / (torch.rand(1, 1, SIDE, SIDE) + 0.5)
        self.opt = torch.optim.Adam(
            [
                {"params": list(self.encoder.parameters()), "lr": LR_ENCODER},
                {"params": [self.decoder.volume], "lr": LR_VOLUME},
            ],
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        self.params = list(self.encoder.parameters()) + [self.decoder.volume]
        self.p = p
        self.norm = 1.0  # set from the targets by main()

    def forward(self, target, train=True):
        """target [B, P] amplitudes → (errors [B, K, 2], rotations [B, K, 3, 3])."""
        b, p = target.shape
        self.encoder.train(train)
        x = (target.view(b, 1, SIDE, SIDE) - self.mean) * self.inv_std
        sixd = self.encoder(x)
        rots = sixd_to_rotation(sixd.reshape(b * HEADS, 6))
        pred = self.decoder(rots).view(b, HEADS, p)
        target_pi = target.flip(-1)  # in-plane π rotation: both image axes reversed
        norm = self.norm
        e0 = (pred - target[:, None]).pow(2).mean(-1)
        e1 = (pred - target_pi[:, None]).pow(2).mean(-1)  # Flip branch: the same prediction
        errors = torch.stack([e0, e1], -1) / norm
        return errors, rots.view(b, HEADS, 3, 3)

    @staticmethod
    def uniformity(rots):
        k = rots.shape[1]
        total = rots.mean(0).pow(2).sum()
        eye = torch.eye(3, dtype=rots.dtype) / 3
        for j in range(3):
            c = rots[..., j : j + 1]  # [B, K, 3, 1]
            second = (c @ c.transpose(2, 3)).mean(0) - eye
            total = total + second.pow(2).sum()
        return total / k

    def train_step(self, target):
        self.opt.zero_grad(set_to_none=True)
        errors, rots = self.forward(target, True)
        per_head = errors.min(-1).values  # [B, K]
        data = per_head.min(-1).values.mean() + MEAN_HEAD_WEIGHT * per_head.mean()
        loss = data + UNIFORMITY_WEIGHT * self.uniformity(rots)
        loss_v = loss.item()
        if not math.isfinite(loss_v):
            raise RuntimeError(f"loss became {loss_v}")
        loss.backward()
        # Candle's Adam computes the global gradient norm every step (for clipping and the log).
        gn = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(q.grad) for q in self.params if q.grad is not None]))
        self.opt.step()
        return loss_v, gn.item()


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(ts), "mean_ms": statistics.fmean(ts), "min_ms": min(ts), "reps": reps}


def mkldnn_ops(enc, x):
    """aten ops with 'mkldnn' in their name run by one encoder forward + backward."""
    from torch.profiler import ProfilerActivity, profile

    # The profiler backend logs to fd 2 (and probes for a GPU): silence it for this call.
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            enc(x).pow(2).sum().backward()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    enc.zero_grad(set_to_none=True)
    return sorted({e.key for e in prof.key_averages() if "mkldnn" in e.key})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (interop threads: 1)")
    ap.add_argument("--steps", type=int, default=50, help="timed repetitions of each measurement (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed repetitions first (default 5)")
    ap.add_argument("--sampler", choices=["grid_sample", "gather"], default="grid_sample", help="trilinear implementation")
    ap.add_argument("--points", choices=["random", "ewald"], default="random", help="detector s-vectors")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    a = ap.parse_args()

    torch.set_num_interop_threads(1)
    torch.set_num_threads(a.threads)
    if a.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    torch.set_grad_enabled(True)

    model = Model(a.sampler, a.points)
    g = torch.Generator().manual_seed(0)
    target = torch.randn(BATCH, SIDE * SIDE, generator=g).abs()  # amplitudes are ≥ 0
    model.norm = float(target.pow(2).mean())
    enc = model.encoder
    x = torch.randn(BATCH, 1, SIDE, SIDE, generator=g)
    xi = torch.randn(256, 1, SIDE, SIDE, generator=g)
    w, r = a.warmup, a.steps
    res = {}

    # One full training step (what `cargo bench --bench xrai` calls "training step (no data)").
    losses = []
    res["train_step"] = timed(lambda: losses.append(model.train_step(target)), w, r)

    res["forward_train_mode"] = timed(lambda: model.forward(target, True), w, r)

    # Encoder alone.
    enc.train()
    res["encoder_forward"] = timed(lambda: enc(x), w, r)

    def enc_fb():
        enc.zero_grad(set_to_none=True)
        enc(x).pow(2).sum().backward()

    res["encoder_forward_backward"] = timed(enc_fb, w, r)
    used = mkldnn_ops(enc, x)
    enc.eval()

    def enc_inf():
        with torch.no_grad():
            enc(xi)

    inf = timed(enc_inf, w, r)
    inf["images_per_s_median"] = 256 / (inf["median_ms"] / 1e3)
    inf["images_per_s_mean"] = 256 / (inf["mean_ms"] / 1e3)
    res["encoder_inference_eval_256"] = inf
    enc.train()

    # The trilinear op alone, as in the Candle bench: 64 × 8 × 1024 samples of a random volume
    # at random coordinates in [2, M − 3] voxels.
    gv = torch.Generator().manual_seed(2)
    vol = torch.rand(M, M, M, generator=gv, requires_grad=True)
    n = BATCH * HEADS
    coords = (torch.rand(n, SIDE * SIDE, 3, generator=gv) * (M - 5) + 2 - (M - 1) / 2).requires_grad_(True)
    sample = model.decoder.sample
    res["trilinear_forward"] = timed(lambda: sample(vol, coords), w, r)

    def tri_fb():
        vol.grad = None
        coords.grad = None
        sample(vol, coords).sum().backward()

    res["trilinear_forward_backward"] = timed(tri_fb, w, r)

    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
        "mkldnn_ops_in_encoder": used,
        "mkl_available": torch.backends.mkl.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "sampler": a.sampler,
        "points": a.points,
        "batch": BATCH,
        "warmup": w,
        "steps": r,
        "last_loss": losses[-1][0],
        "last_grad_norm": losses[-1][1],
    }
    if a.json:
        print(json.dumps({**info, **res}))
        return
    print(f"torch {info['torch']} (python {info['python']}, CPU {info['cpu_capability']}), threads {info['threads']}, interop {info['interop_threads']}")
    print(f"mkldnn available {info['mkldnn_available']}, enabled {info['mkldnn_enabled']}, used by the encoder: {', '.join(used) or 'no'}")
    print(f"trilinear sampler: {a.sampler}, detector points: {a.points}; {w} warm-up + {r} timed repetitions each")
    rows = [
        ("training step, default config", "train_step"),
        ("forward only (train mode)", "forward_train_mode"),
        ("encoder forward (train mode, batch 64)", "encoder_forward"),
        ("encoder forward + backward (batch 64)", "encoder_forward_backward"),
        ("encoder inference (eval mode, 256 images)", "encoder_inference_eval_256"),
        ("trilinear forward (524,288 samples)", "trilinear_forward"),
        ("trilinear forward + backward", "trilinear_forward_backward"),
    ]
    print(f"{'':<44} {'median':>9} {'mean':>9}")
    for name, key in rows:
        print(f"{name:<44} {res[key]['median_ms']:>9.2f} {res[key]['mean_ms']:>9.2f} ms")
    print(f"{'encoder inference':<44} {inf['images_per_s_median']:>9.0f} {inf['images_per_s_mean']:>9.0f} images/s")
    print(f"last loss {info['last_loss']:.4f}, grad norm {info['last_grad_norm']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
