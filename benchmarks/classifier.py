r"""A small Fashion-MNIST classifier, used by the restoration benchmark to score restorations.

Trained on the training split only (Adam, 4 epochs, light augmentation-free setup), weights
saved to ``benchmarks/weights/classifier.safetensors`` (safetensors; about 100k parameters).
Its accuracy on the clean test split is printed and stored in the JSON beside the weights.

Run: ``python benchmarks/classifier.py [--epochs 4]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import torch
import torch.nn as nn

from deepinv_energy.data import DEFAULT_FASHION_MNIST, load_idx_images, read_idx

ROOT = pathlib.Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "benchmarks" / "weights" / "classifier.safetensors"


def build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def labels(split: str) -> torch.Tensor:
    name = "train-labels-idx1-ubyte.gz" if split == "train" else "t10k-labels-idx1-ubyte.gz"
    return torch.as_tensor(read_idx(f"{DEFAULT_FASHION_MNIST}/{name}")).long()


def load_classifier() -> nn.Module:
    """The bundled classifier (eval mode); input images in [0, 1], (B, 1, 28, 28)."""
    from safetensors.torch import load_file

    net = build()
    net.load_state_dict(load_file(str(WEIGHTS)))
    return net.eval()


@torch.no_grad()
def accuracy(net, x, y, batch=1000) -> float:
    pred = torch.cat([net(b).argmax(1) for b in x.split(batch)])
    return (pred == y).float().mean().item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xtr, ytr = load_idx_images(DEFAULT_FASHION_MNIST, "train"), labels("train")
    xte, yte = load_idx_images(DEFAULT_FASHION_MNIST, "test"), labels("test")
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.epochs * (len(xtr) // 128))
    t0 = time.time()
    for ep in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(len(xtr) // 128):
            idx = perm[i * 128 : (i + 1) * 128]
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        print(f"epoch {ep + 1}: test accuracy {accuracy(net, xte, yte):.4f} ({time.time() - t0:.0f} s)", flush=True)
    from safetensors.torch import save_file

    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(WEIGHTS))
    acc = accuracy(net, xte, yte)
    WEIGHTS.with_suffix(".json").write_text(json.dumps({"test_accuracy": acc, "epochs": args.epochs,
                                                        "params": sum(p.numel() for p in net.parameters())}, indent=2))
    print(f"saved {WEIGHTS}; clean test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
