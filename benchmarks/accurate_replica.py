"""A PyTorch replica of cnnkit's `accurate` recipe, for asking "would this change help?" with many seeds.

Not cnnkit: a sweep tool for a lent GPU (any CUDA machine with PyTorch; no Keras needed there).
K seeds train at once as ONE grouped network: seed k's convolutions are group k of each grouped
convolution, its batch norm channels are its own, its dense layer is slice k of an einsum. Each seed
has its own 6,000-image validation split, data order, augmentation draws and initialisation, and
its parameters are disjoint from the others', so the summed loss trains K independent models at
the cost of one launch per layer. Every variant reuses the same seeds (``seed0``), so variants are
compared seed by seed (paired differences).

It copies the recipe's body (conv5 32 pooled, 2x conv3 64, 2x conv3 128, BN momentum 0.9, eps 1e-3,
global max pool, dropout, dense; Glorot-uniform init), AdamW with warm-up (15 %, from peak/10) and
cosine decay to 0, batch 128, bfloat16 autocast on GPU, and the one-pixel-shift TTA. It differs
from Keras in one place on purpose: augmentation is one affine resample (rotation, zoom, shift)
instead of Keras' three layers in a row.

Only validation accuracy is computed: this is for choosing, never for reporting a test score.

    python3 benchmarks/accurate_replica.py OUT.jsonl '[{"name": "base"}, {"name": "ls", "ls": 0.1}]' 16

Variant keys and defaults are in BASE. MNIST's IDX files (plain or .gz) are read from $MNIST_DIR,
else from cnnkit's cache ($CNNKIT_HOME/datasets/mnist, default ~/.cache/cnnkit). Results in
benchmarks/RESULTS.md ("Is `accurate` at a plateau?").
"""
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEV = "cuda" if torch.cuda.is_available() else "cpu"
BASE = dict(name="base", epochs=27, batch=128, lr=3e-3, wd=0.05, dropout=0.4, rot=0.04, zoom=0.12,
            trans=0.1, width=1.0, ls=0.0, ema=0.0, warm=0.15, steps_limit=0, bn_mom=0.1, seed0=100)


def load_mnist():
    home = os.environ.get("CNNKIT_HOME", os.path.expanduser("~/.cache/cnnkit"))
    d = os.environ.get("MNIST_DIR", os.path.join(home, "datasets", "mnist"))
    def rd(name, off):
        p = os.path.join(d, name)
        raw = gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()
        return np.frombuffer(raw, np.uint8, offset=off)
    x = rd("train-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    y = rd("train-labels-idx1-ubyte", 8)
    return torch.tensor(x, device=DEV).float(), torch.tensor(y.astype(np.int64), device=DEV)


def glorot_(w, groups):  # w: (K*cout, cin, kh, kw) for grouped conv
    cout = w.shape[0] // groups
    cin = w.shape[1]
    rf = w.shape[2] * w.shape[3]
    a = math.sqrt(6 / (cin * rf + cout * rf))
    nn.init.uniform_(w, -a, a)


class Net(nn.Module):
    def __init__(self, K, width, dropout, bn_mom):
        super().__init__()
        c = [max(4, int(round(v * width))) for v in (32, 64, 64, 128, 128)]
        self.K = K
        # (in, out, kernel, max-pool before batch norm): conv5 32 pooled, 2x conv3 64 (2nd pooled), 2x conv3 128
        spec = [(1, c[0], 5, True), (c[0], c[1], 3, False), (c[1], c[2], 3, True),
                (c[2], c[3], 3, False), (c[3], c[4], 3, False)]
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.pool = []
        for cin, cout, k, pool in spec:
            conv = nn.Conv2d(K * cin, K * cout, k, padding=k // 2, groups=K, bias=False)
            glorot_(conv.weight, K)
            self.convs.append(conv)
            self.bns.append(nn.BatchNorm2d(K * cout, eps=1e-3, momentum=bn_mom))  # Keras momentum 0.9 = torch 0.1
            self.pool.append(pool)
        self.drop = nn.Dropout(dropout)
        a = math.sqrt(6 / (c[4] + 10))
        self.w = nn.Parameter(torch.empty(K, c[4], 10).uniform_(-a, a))
        self.b = nn.Parameter(torch.zeros(K, 10))

    def forward(self, x):  # x: (B, K, 28, 28) in [0, 1]
        for conv, bn, pool in zip(self.convs, self.bns, self.pool):
            x = conv(x)
            if pool:
                x = F.max_pool2d(x, 2)
            x = F.relu(bn(x))
        x = x.amax(dim=(2, 3)).view(x.shape[0], self.K, -1)
        x = self.drop(x)
        return torch.einsum("bkc,kcn->bkn", x, self.w.to(x.dtype)) + self.b.to(x.dtype)


def augment(img, v, gen):  # img: (N, 1, 28, 28)
    n = img.shape[0]

    def u():  # uniform in [-1, 1), one draw per image
        return torch.rand(n, device=DEV, generator=gen) * 2 - 1

    ang = u() * v["rot"] * 2 * math.pi
    s = 1 + u() * v["zoom"]
    tx, ty = u() * v["trans"] * 2, u() * v["trans"] * 2
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, img.shape, align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shifts(x):  # x: (B, K, 28, 28) -> 5 views, edge fill
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return [x, p[:, :, 1:-1, 2:], p[:, :, 1:-1, :-2], p[:, :, 2:, 1:-1], p[:, :, :-2, 1:-1]]


def run_variant(v, X, Y, K):
    v = {**BASE, **v}
    torch.manual_seed(v["seed0"])
    gen = torch.Generator(device=DEV)
    gen.manual_seed(v["seed0"])
    n = X.shape[0]
    nval = n // 10
    perms = torch.stack([torch.randperm(n, device=DEV, generator=gen) for _ in range(K)])
    val_idx, tr_idx = perms[:, :nval], perms[:, nval:]
    ntr = tr_idx.shape[1]
    B = v["batch"]
    spe = ntr // B
    steps = spe * v["epochs"] if not v["steps_limit"] else v["steps_limit"]
    net = Net(K, v["width"], v["dropout"], v["bn_mom"]).to(DEV)
    opt = torch.optim.AdamW(net.parameters(), lr=v["lr"], betas=(0.9, 0.999), eps=1e-7, weight_decay=v["wd"])
    warm = max(1, int(v["warm"] * steps))
    peak = v["lr"]
    def lr_at(i):
        if i < warm:
            return peak / 10 + (peak - peak / 10) * i / warm
        return 0.5 * peak * (1 + math.cos(math.pi * min(1.0, (i - warm) / max(1, steps - warm))))
    ema = [t.detach().clone() for t in list(net.parameters()) + list(net.buffers())] if v["ema"] else None
    t0 = time.time()
    i = 0
    ep = 0
    while i < steps:
        order = torch.argsort(torch.rand(K, ntr, device=DEV, generator=gen), dim=1)
        ep_idx = torch.gather(tr_idx, 1, order)
        net.train()
        for s in range(spe):
            if i >= steps:
                break
            idx = ep_idx[:, s * B:(s + 1) * B]  # (K, B)
            xb = X[idx].view(K * B, 1, 28, 28)
            xb = augment(xb, v, gen).view(K, B, 28, 28).transpose(0, 1) / 255.0
            yb = Y[idx].transpose(0, 1)  # (B, K)
            for g in opt.param_groups:
                g["lr"] = lr_at(i)
            with torch.autocast(device_type=DEV, dtype=torch.bfloat16, enabled=DEV == "cuda"):
                logits = net(xb)
            loss = F.cross_entropy(logits.float().reshape(-1, 10), yb.reshape(-1), label_smoothing=v["ls"]) * K
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                d = min(v["ema"], (1 + i) / (10 + i))
                with torch.no_grad():
                    cur = list(net.parameters()) + list(net.buffers())
                    for e, c in zip(ema, cur):
                        if e.dtype.is_floating_point:
                            e.mul_(d).add_(c.detach(), alpha=1 - d)
                        else:
                            e.copy_(c)
            i += 1
        ep += 1
        if ep % 9 == 0 or ep == 1:
            print(f"  epoch {ep} step {i} {time.time() - t0:.1f}s loss {loss.item() / K:.4f}", flush=True)
    train_s = time.time() - t0
    res = {"variant": v, "train_s": round(train_s, 1), "epochs_run": ep}
    res.update(evaluate(net, X, Y, val_idx, K, "raw"))
    if ema is not None:
        with torch.no_grad():
            for e, c in zip(ema, list(net.parameters()) + list(net.buffers())):
                c.copy_(e)
        res.update(evaluate(net, X, Y, val_idx, K, "ema"))
    return res


@torch.no_grad()
def evaluate(net, X, Y, val_idx, K, tag):
    net.eval()
    nval = val_idx.shape[1]
    p1 = []
    p5 = []
    for s in range(0, nval, 1000):
        idx = val_idx[:, s:s + 1000]
        xb = X[idx].transpose(0, 1) / 255.0
        with torch.autocast(device_type=DEV, dtype=torch.bfloat16, enabled=DEV == "cuda"):
            probs = [F.softmax(net(view).float(), -1) for view in shifts(xb)]
        p1.append(probs[0])
        p5.append(sum(probs) / 5)
    p1 = torch.cat(p1)  # (nval, K, 10)
    p5 = torch.cat(p5)
    y = Y[val_idx].transpose(0, 1)
    acc1 = (p1.argmax(-1) == y).float().mean(0)
    acc5 = (p5.argmax(-1) == y).float().mean(0)
    loss1 = -torch.log(p1.gather(-1, y[..., None]).squeeze(-1).clamp_min(1e-12)).mean(0)

    def r(t):  # one rounded number per seed
        return [round(float(a), 5) for a in t]

    return {f"{tag}_acc": r(acc1), f"{tag}_acc_tta": r(acc5), f"{tag}_loss": r(loss1),
            f"{tag}_mean_acc": round(float(acc1.mean()), 5), f"{tag}_mean_acc_tta": round(float(acc5.mean()), 5),
            f"{tag}_mean_loss": round(float(loss1.mean()), 5)}


if __name__ == "__main__":
    out, variants = sys.argv[1], json.loads(sys.argv[2])
    K = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    torch.backends.cudnn.benchmark = True
    X, Y = load_mnist()
    print("device", DEV, torch.cuda.get_device_name() if DEV == "cuda" else "", flush=True)
    for v in variants:
        res = run_variant(v, X, Y, K)
        line = json.dumps(res)
        print({k: res[k] for k in res if "mean" in k or k in ("train_s", "epochs_run")}, v, flush=True)
        with open(out, "a") as f:
            f.write(line + "\n")
