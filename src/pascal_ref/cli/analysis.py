"""``pascal-ref al`` and ``pascal-ref cost``: the AL metric and the cost model on a data set.

``al MODEL --data D`` prints A, g, K and M of every hidden layer (on the
calibration split, digits train by default), clusters the layers by M and
proposes one L per layer.  ``cost MODEL --data D`` prints per-layer stage
steps, T_eff, spikes, MACs, ACs, neuron updates and energy, the totals and
the ANN-equivalent energy, with the SNN's accuracy when the data has labels.
Both write ``--json OUT`` and, with ``--plot DIR``, PNG figures.

Plot files are named from the network name made safe
(:func:`~pascal_ref.cli.common.safe_filename`: a name such as
``../../etc/x`` or ``/tmp/x`` cannot choose the folder) and are written only
directly inside ``DIR`` (:func:`~pascal_ref.cli.common.path_inside`, which
also refuses a planted symlink pointing out of it).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from pascal_ref.cli import CommandError, require_extra
from pascal_ref.cli.common import (
    add_model_argument,
    check_count,
    echo,
    load_model,
    network_with_levels,
    path_inside,
    safe_filename,
    write_json,
)
from pascal_ref.errors import printable

__all__ = ["register_al", "register_cost"]


def _load(args, split: str):
    from pascal_ref.io.data import load_data

    check_count(args.limit, "--limit")
    check_count(args.batch_size, "--batch-size")
    network = load_model(args.model)
    data = load_data(args.data, split=split, limit=args.limit, network=network)
    return network, data


def _pyplot():
    require_extra("plot", "--plot")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plot_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _save_figure(plt, fig, directory: str, filename: str) -> str:
    """Lay out, write as PNG directly inside ``directory``, close; the file's path."""
    path = path_inside(directory, filename)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------ al


def _al(args):
    from pascal_ref.analysis.al import check_bins, cluster_1d, layer_metrics, levels_for_clusters, resolve_level_set

    check_bins(args.bins)
    check_count(args.clusters, "--clusters")
    network, data = _load(args, args.split)
    level_set = resolve_level_set(args.level_set)
    rows = layer_metrics(network, data.x, bins=args.bins, batch_size=args.batch_size)
    metrics = [row.metric.M for row in rows]
    clusters = args.clusters if args.clusters is not None else min(len(level_set), len(set(metrics)))
    if clusters > len(rows):
        raise CommandError(f"--clusters {clusters}: the network has only {len(rows)} hidden layers")
    labels = cluster_1d(metrics, clusters)
    per_cluster = levels_for_clusters(clusters, level_set, args.direction)
    proposal = [int(per_cluster[label]) for label in labels]
    payload = {
        "model": network.name, "data": data.name, "samples": len(data), "bins": args.bins,
        "clusters": clusters, "level_set": list(level_set), "direction": args.direction,
        "cluster_levels": per_cluster, "proposed_levels": proposal, "current_levels": network.levels,
        "layers": [{"layer": row.name, "levels": row.levels, "values": row.values, "A": row.metric.A,
                    "g": row.metric.g, "K": row.metric.K, "M": row.metric.M, "cluster": int(label),
                    "proposed_levels": level, "histogram": row.counts.tolist(), "edges": row.edges.tolist()}
                   for row, label, level in zip(rows, labels, proposal)],
    }
    if args.json:
        write_json(args.json, payload)
    if args.json != "-":
        echo(f"{network.name}: AL metric on {data.name} ({len(data)} samples), {args.bins} bins")
        head = f"{'layer':<18}{'L':>4}{'values':>10}{'A':>7}{'g':>9}{'K':>9}{'M':>10}{'cluster':>9}{'L new':>7}  histogram"
        echo(head)
        echo("-" * len(head))
        for row, label, level in zip(rows, labels, proposal):
            m = row.metric
            echo(f"{printable(row.name):<18}{row.levels:>4}{row.values:>10}{m.A:>7.3f}{m.g:>9.4f}{m.K:>9.4f}"
                 f"{m.M:>10.4f}{label:>9}{level:>7}  {row.counts.tolist()}")
        echo(f"clusters {clusters} -> L {per_cluster} (cluster 0 has the lowest M; {args.direction}); "
             f"proposed levels: {','.join(map(str, proposal))}")
    if args.plot:
        _plot_al(rows, proposal, _plot_dir(args.plot), network.name)
    return 0


def _plot_al(rows, proposal, directory: str, name: str):
    plt = _pyplot()
    columns = min(4, len(rows))
    lines = (len(rows) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.6 * lines), squeeze=False)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    for ax, row, level in zip(axes.ravel(), rows, proposal):
        edges = row.edges
        ax.bar(edges[:-1], row.counts, width=np.diff(edges), align="edge", edgecolor="black", color="tab:blue")
        ax.axhline(row.counts.sum() / row.counts.size, color="tab:red", lw=1, ls="--")
        ax.set_title(f"{printable(row.name)} L={row.levels}: M={row.metric.M:.2f} -> L={level}", fontsize=9)
        ax.set_xlabel("level q", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{printable(name)}: post-QCFS histograms (dashed: N/n)", fontsize=10)
    path = _save_figure(plt, fig, directory, f"{safe_filename(name)}_al_histograms.png")
    echo(f"wrote {path}", file=sys.stderr)


def register_al(subparsers):
    parser = subparsers.add_parser("al", help="AL metric per layer and a proposed L per layer")
    _common(parser, default_split="train")
    parser.add_argument("--bins", type=int, default=5, help="histogram bins n (>= 4; default 5)")
    parser.add_argument("--clusters", type=int, default=None,
                        help="number of clusters of layers by M (default: size of the L set, at most the distinct M)")
    parser.add_argument("--level-set", default="pow2",
                        help="L values for the clusters: pow2 (1,2,4,8; default), pow2-16, pow2-from2, 1-8, or '1,2,4'")
    parser.add_argument("--direction", choices=("high-m-fewer-levels", "high-m-more-levels"),
                        default="high-m-fewer-levels", help="which way M maps to L (default: high M, fewer levels)")
    parser.set_defaults(handler=_al)


def _common(parser, default_split: str):
    add_model_argument(parser)
    parser.add_argument("--data", required=True, help="'digits' or an .npz with arrays x (and y)")
    parser.add_argument("--split", choices=("train", "test"), default=default_split,
                        help=f"digits split (default {default_split}; ignored for .npz files)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT ('-' for stdout)")
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")


# ---------------------------------------------------------------- cost


def _cost(args):
    from pascal_ref.analysis.cost import EnergyModel, format_cost, measure, network_cost
    from pascal_ref.analysis.verify import check_run_size

    network, data = _load(args, args.split)
    if args.levels:
        network = network_with_levels(network, args.levels)
    check_run_size(network, min(args.batch_size, len(data)), "count")
    energy = EnergyModel(mac_pj=args.mac_pj, ac_pj=args.ac_pj, neuron_pj=args.neuron_pj)
    counts, logits = measure(network, data.x, args.batch_size)
    cost = network_cost(network, counts=counts, energy=energy)
    accuracy = None if data.y is None else float(np.mean(np.argmax(logits, axis=1) == data.y))
    payload = {"model": network.name, "data": data.name, "accuracy": accuracy, **cost.to_dict()}
    if args.json:
        write_json(args.json, payload)
    if args.json != "-":
        echo(format_cost(cost))
        if accuracy is not None:
            echo(f"SNN accuracy on {data.name}: {100 * accuracy:.2f}% ({len(data)} samples)")
    if args.plot:
        _plot_cost(cost, _plot_dir(args.plot))
    return 0


def _plot_cost(cost, directory: str):
    plt = _pyplot()
    names = [printable(row.name) for row in cost.layers]
    positions = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3))
    ax.bar(positions, [row.spikes_out for row in cost.layers], color="tab:blue")
    ax.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("spikes / inference")
    ax.set_title(f"{printable(cost.name)}: transmitted spikes per layer (L {cost.levels})", fontsize=10)
    stem = safe_filename(cost.name)
    spikes_path = _save_figure(plt, fig, directory, f"{stem}_spikes.png")

    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3))
    e = cost.energy_model
    parts = [("MAC", [r.macs * e.mac_pj for r in cost.layers], "tab:red"),
             ("AC", [r.acs * e.ac_pj for r in cost.layers], "tab:blue"),
             ("neuron", [r.neuron_updates * e.neuron_pj for r in cost.layers], "tab:green")]
    bottom = np.zeros(len(names))
    width = 0.4
    for label, values, color in parts:
        values = np.asarray(values) / 1e3
        ax.bar(positions - width / 2, values, width, bottom=bottom, label=f"SNN {label}", color=color)
        bottom += values
    ax.bar(positions + width / 2, [r.ann_energy_pj / 1e3 for r in cost.layers], width, label="ANN (MAC)",
           color="tab:gray")
    ax.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("energy / inference (nJ)")
    ax.set_title(f"{printable(cost.name)}: energy per layer, SNN {cost.energy_pj / 1e3:.1f} nJ vs ANN "
                 f"{cost.ann_energy_pj / 1e3:.1f} nJ", fontsize=10)
    ax.legend(fontsize=7)
    energy_path = _save_figure(plt, fig, directory, f"{stem}_energy.png")
    echo(f"wrote {spikes_path}, {energy_path}", file=sys.stderr)


def register_cost(subparsers):
    parser = subparsers.add_parser("cost", help="timesteps, T_eff, operations and energy per layer")
    _common(parser, default_split="test")
    parser.add_argument("--levels", default=None,
                        help="override L of every activation: one int or a comma-separated list (no retraining)")
    parser.add_argument("--mac-pj", type=float, default=4.6, help="energy per MAC in pJ (default 4.6)")
    parser.add_argument("--ac-pj", type=float, default=0.9, help="energy per AC in pJ (default 0.9)")
    parser.add_argument("--neuron-pj", type=float, default=None,
                        help="energy per neuron update in pJ (default 4/3 of --ac-pj, the value behind the official r)")
    parser.set_defaults(handler=_cost)
