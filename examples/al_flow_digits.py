"""The AL flow on digits: uniform L, metric M, L per layer, fine-tune, compare (needs PyTorch).

1. Train a QCFS network with one L everywhere (``--base-levels``, 4) with the
   trainer of ``examples/train_digits.py`` (same data, optimizer, schedule,
   augmentation).
2. Compute the AL metric M of every hidden layer on the digits *train*
   split (:func:`pascal_ref.analysis.al.layer_metrics`), cluster the layers by M and
   map the clusters to L values (:func:`pascal_ref.analysis.al.propose_levels`; both
   directions of the map are run, the default first).
3. Fine-tune the trained network with the proposed L per layer, and, for
   comparison, with uniform L in {1, 2, 4, 8}: every configuration starts
   from the same trained weights and gets the same number of epochs.
4. Export each one and measure on the digits *test* split with the SNN:
   accuracy, total latency in timesteps, T_eff, spikes and energy per
   inference (:mod:`pascal_ref.analysis.cost`, default 45 nm figures).

Networks: ``deep`` (default), an MLP 64 -> 128 -> 96 -> 64 -> 48 -> 10 with
four QCFS layers, so that there is something to cluster; ``cnn``, the
bundled CNN architecture of ``train_digits.py`` (two QCFS layers).  Input is
count coded with ``L_in = 16`` as in the bundled models.

The table is the same on every run: the trainer pins seed, threads,
deterministic algorithms and torch's kernels (``train_digits.pin_reproducibility``);
only the seconds in the progress lines vary.

Run from the repository root (about a minute on one core for ``deep``)::

    python examples/al_flow_digits.py
    python examples/al_flow_digits.py --model cnn --clusters 2 --level-set 2,4,8 --json /tmp/al_flow.json
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_digits  # noqa: E402  (the trainer of the bundled models; first: it pins torch's kernels)

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from pascal_ref.analysis.al import layer_metrics, levels_for_clusters, propose_levels, resolve_level_set  # noqa: E402
from pascal_ref.analysis.cost import measure, network_cost  # noqa: E402
from pascal_ref.cli.common import write_json  # noqa: E402
from pascal_ref.convert.torch_export import QCFS, export  # noqa: E402
from pascal_ref.io.data import load_digits_split  # noqa: E402

UNIFORM = (1, 2, 4, 8)


def make_deep_mlp(levels: int = train_digits.LEVELS) -> nn.Module:
    widths = (64, 128, 96, 64, 48)
    layers = []
    for index, (n_in, n_out) in enumerate(zip(widths, widths[1:]), start=1):
        layers += [(f"fc{index}", nn.Linear(n_in, n_out)), (f"act{index}", QCFS(levels, thresh=2.0))]
    layers.append(("out", nn.Linear(widths[-1], 10)))
    return nn.Sequential(OrderedDict(layers))


NETWORKS = {"deep": (make_deep_mlp, (64,)), "cnn": train_digits.MODELS["cnn"]}


def qcfs_modules(model: nn.Module) -> list[QCFS]:
    return [m for m in model.modules() if isinstance(m, QCFS)]


def run_trainer(make, shape, epochs: int, seed: int, augment: bool) -> nn.Module:
    """``train_digits.train`` on a model of our choosing: it builds its model
    through the ``MODELS`` registry, so we register ours under a private key."""
    key = "_al_flow"
    train_digits.MODELS[key] = (make, shape)
    try:
        return train_digits.train(key, epochs, seed, augment, verbose=False)
    finally:
        del train_digits.MODELS[key]


def with_levels(model: nn.Module, levels) -> nn.Module:
    """A copy of a trained torch model with new L per QCFS layer (weights and thresholds kept)."""
    tuned = copy.deepcopy(model)
    modules = qcfs_modules(tuned)
    if len(modules) != len(levels):
        raise ValueError(f"{len(levels)} levels for {len(modules)} QCFS layers")
    for module, level in zip(modules, levels):
        module.L = int(level)
    return tuned


def evaluate(model: nn.Module, shape, name: str, x_test, y_test) -> dict:
    network = export(model, shape, input_levels=train_digits.INPUT_LEVELS, name=name)
    x = x_test.reshape((-1,) + shape)
    counts, logits = measure(network, x)
    cost = network_cost(network, counts=counts)
    return {"config": name, "levels": network.levels, "accuracy": float(np.mean(logits.argmax(1) == y_test)),
            "latency": cost.latency, "sum_steps": cost.sum_steps, "t_eff": cost.t_eff, "spikes": cost.spikes,
            "acs": cost.acs, "energy_nj": cost.energy_pj / 1e3, "ann_energy_nj": cost.ann_energy_pj / 1e3,
            "energy_ratio": cost.energy_ratio}


def format_table(rows) -> str:
    head = (f"{'configuration':<26}{'L per layer':<16}{'accuracy':>9}{'latency':>9}{'T_eff':>8}"
            f"{'spikes':>9}{'E (nJ)':>9}{'E/E_ANN':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['config']:<26}{','.join(map(str, r['levels'])):<16}{100 * r['accuracy']:>8.2f}%"
                     f"{r['latency']:>9}{r['t_eff']:>8.3f}{r['spikes']:>9.1f}{r['energy_nj']:>9.2f}"
                     f"{r['energy_ratio']:>9.3f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(NETWORKS), default="deep")
    parser.add_argument("--base-levels", type=int, default=4, help="uniform L of the first training (default 4)")
    parser.add_argument("--epochs", type=int, default=None, help="first training (default: deep 100, cnn 40)")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="each fine-tune (default: deep 40, cnn 15)")
    parser.add_argument("--clusters", type=int, default=None, help="clusters of layers by M (default: as in propose_levels)")
    parser.add_argument("--level-set", default="pow2", help="L values for the clusters (default pow2 = 1,2,4,8)")
    parser.add_argument("--bins", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machines are shared)")
    parser.add_argument("--json", metavar="OUT", help="write the table and the AL numbers as JSON")
    args = parser.parse_args(argv)
    print(train_digits.pin_reproducibility(args.threads))
    level_set = resolve_level_set(args.level_set)
    make, shape = NETWORKS[args.model]
    epochs = args.epochs or {"deep": 100, "cnn": 40}[args.model]
    finetune = args.finetune_epochs or {"deep": 40, "cnn": 15}[args.model]
    augment = not args.no_augment
    x_train, _, x_test, y_test = load_digits_split()

    start = time.time()
    base = run_trainer(lambda: make(args.base_levels), shape, epochs, args.seed, augment)
    print(f"1. trained {args.model} with L={args.base_levels} everywhere: {epochs} epochs, {time.time() - start:.0f} s")

    base_net = export(base, shape, input_levels=train_digits.INPUT_LEVELS, name=f"{args.model}-base")
    al_rows = layer_metrics(base_net, x_train.reshape((-1,) + shape), bins=args.bins)
    metrics = [row.metric.M for row in al_rows]
    clusters = args.clusters if args.clusters is not None else min(len(level_set), len(set(metrics)))
    proposals = {direction: propose_levels(metrics, clusters, level_set, direction)
                 for direction in ("high-m-fewer-levels", "high-m-more-levels")}
    print(f"2. AL metric on the digits train split ({args.bins} bins), {clusters} clusters over L set {list(level_set)}:")
    for row in al_rows:
        m = row.metric
        print(f"   {row.name:<8} A={m.A:.3f} g={m.g:+.4f} K={m.K:.4f} M={m.M:.4f} histogram {row.counts.tolist()}")
    for direction, levels in proposals.items():
        print(f"   {direction}: clusters -> L {levels_for_clusters(clusters, level_set, direction)}, "
              f"proposed L per layer {levels}")

    configs = [(f"AL ({direction})", levels) for direction, levels in proposals.items()]
    configs += [(f"uniform L={level}", [level] * len(al_rows)) for level in UNIFORM]
    results = [dict(evaluate(base, shape, f"base L={args.base_levels}", x_test, y_test), config="base (no fine-tune)")]
    print(f"3. fine-tuning {len(configs)} configurations, {finetune} epochs each, from the base weights")
    for name, levels in configs:
        start = time.time()
        tuned = run_trainer(lambda: with_levels(base, levels), shape, finetune, args.seed, augment)
        row = evaluate(tuned, shape, name, x_test, y_test)
        results.append(row)
        print(f"   {name:<26} L {levels}: {100 * row['accuracy']:.2f}% ({time.time() - start:.0f} s)")
    print(f"4. digits test split ({len(y_test)} images), SNN; latency = total timesteps incl. the 16-step input, "
          "energy per inference (MAC 4.6 pJ, AC 0.9 pJ, neuron update 1.2 pJ)")
    print(format_table(results))
    if args.json:
        payload = {"model": args.model, "base_levels": args.base_levels, "epochs": epochs, "finetune_epochs": finetune,
                   "clusters": clusters, "level_set": list(level_set), "bins": args.bins,
                   "layers": [{"layer": r.name, "A": r.metric.A, "g": r.metric.g, "K": r.metric.K, "M": r.metric.M,
                               "histogram": r.counts.tolist()} for r in al_rows],
                   "proposals": proposals, "results": results}
        write_json(args.json, payload)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
