"""Check the templates and the exporter against a checkout of BrainSeek-Lab/PASCAL.

Needs PyTorch and a local checkout (never modified; loaded by
``benchmarks/pascal_repo.py``).  For VGG-16, ResNet-18 and ResNet-34 it

1. compares the checkout's ``state_dict()`` key names and shapes with
   :func:`pascal_ref.convert.architectures.expected_keys` (10, 100, 1000 classes);
2. loads one random state dict into the reference model, runs it in ANN mode
   (``set_train()``: the QCFS forward) in float64 on a random CIFAR batch, and
   compares its logits with ``float_ann`` of (a) the template built from the
   ``torch.save`` file read by the torch-free reader and (b) the exporter.
   (The reference ResNet block runs its ANN forward only when the L of its two
   activations agree; the check equalises the block's ``T``/``T_new`` flags
   for that forward, which the ANN arithmetic does not use.)

Usage (from the repository root)::

    python examples/check_pascal_checkout.py /path/to/PASCAL
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from pascal_repo import pascal_resnet, pascal_vgg16  # noqa: E402

from pascal_ref.convert import architectures  # noqa: E402
from pascal_ref.convert.state_dict import load_state_dict  # noqa: E402
from pascal_ref.convert.torch_export import export  # noqa: E402
from pascal_ref.golden.ann import float_ann  # noqa: E402
from pascal_ref.testing import random_state_dict  # noqa: E402


def reference_model(repo, arch, levels, num_classes):
    if arch == "vgg16":
        return pascal_vgg16(repo, levels, num_classes)
    return pascal_resnet(repo, int(arch[len("resnet"):]), levels, num_classes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="checkout of BrainSeek-Lab/PASCAL")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    failures = 0
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 3, 32, 32))
    for arch in architectures.ARCHITECTURES:
        names = architectures.activation_names(arch)
        for num_classes in architectures.NUM_CLASSES:
            model = reference_model(args.repo, arch, [4] * len(names), num_classes)
            keys = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
            same = keys == architectures.expected_keys(arch, num_classes)
            failures += not same
            print(f"{arch:9s} {num_classes:4d} classes: {len(keys)} state-dict keys, names and shapes "
                  + ("identical to the template" if same else "DIFFER from the template"))
        levels = [(2, 4, 8)[i % 3] for i in range(len(names))]
        model = reference_model(args.repo, arch, levels, 10).double()
        state = random_state_dict(arch, 10, rng=1)
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
        model.eval()
        model.set_train()        # ANN (QCFS) mode of the reference
        for module in model.modules():
            # The reference block's forward takes its time-split path whenever the L of its
            # two activations differ (T != T_new), even in ANN mode; the ANN sum needs no split.
            if hasattr(module, "T_new"):
                module.T_new = module.T
        with torch.no_grad():
            expected = model(torch.tensor(x)).numpy()
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{arch}.pth")
            torch.save(model.state_dict(), path)
            from_template = architectures.build(arch, 10, levels, load_state_dict(path))
        exported = export(model, (3, 32, 32), skip=("merge", "expand"))
        for label, network in (("template from .pth (no torch)", from_template), ("exporter", exported)):
            diff = float(np.max(np.abs(float_ann(network, x).logits - expected)))
            ok = diff <= args.tolerance and network.levels == levels
            failures += not ok
            print(f"{arch:9s} {label:30s} vs the reference's ANN forward: max |logit diff| {diff:.3e}"
                  + ("" if ok else "  FAIL"))
    print("all agree" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
