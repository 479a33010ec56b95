"""Speed and memory of the golden model's engines against PyTorch and the reference implementation.

Usage (from the repository root, venv active)::

    python benchmarks/bench_engines.py --model vgg16 --levels 4
    python benchmarks/bench_engines.py --model vgg16 --levels mixed --pascal-repo /tmp/pascal-checkout
    python benchmarks/bench_engines.py --model resnet18 --levels 4 --pascal-repo /tmp/pascal-checkout

Every engine runs on the same random-weight network (``pascal_ref.testing.random_template_network``,
CIFAR shape 3x32x32, 10 classes) and the same batch, each in its own process
(built once, so thread pools of one engine never spin on the cores while
another one runs).  Engines are timed round-robin, one run of each per round
after a warm-up round, with a short pause between runs, so load changes on a
shared machine hit all of them alike; the script prints the median of every
engine and ratios of medians from this one run.

Engines:

``torch_ann``        PyTorch float32 QCFS ANN forward (BatchNorm folded), same weights.
``pascal_ann``       the reference implementation's model in ANN mode (``set_train()``:
                     QCFS activations, BatchNorm unfolded), with ``--pascal-repo``; its
                     ResNet blocks are told their input and output L are equal, as
                     their time-dimension bookkeeping does not apply without time.
``torch_dense_snn``  PyTorch SNN computed as the reference does: every timestep a dense pass.
``pascal_snn``       the reference implementation's own SNN on the CPU, with ``--pascal-repo``.
``float32_ann``      our float32 QCFS ANN on the fast kernels (:func:`pascal_ref.fast.float_ann_fast`).
``reference_ann``    our readable float ANN (:func:`pascal_ref.golden.ann.float_ann`, float32), ``--with-reference``.
``count``            our integer count engine (:func:`pascal_ref.fast.count_engine`, exact).
``timestep``         our integer timestep engine (Numba, event driven), with synaptic events/s.

The PASCAL models get the same state dict as ours (same random weights and
thresholds; their bias handling differs, so their outputs are not compared).

Peak memory (``--memory``, default on): after the warm-up, each engine's
process resets the kernel's resident high-water mark (``/proc/self/clear_refs``)
and runs once more; "run peak" is the resident memory at the worst moment of
that inference (interpreter, libraries and weights included), "setup" the
resident memory just before it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MIXED = {"vgg16": [8, 4, 4, 1, 4, 4, 1, 1, 1, 1, 1, 4, 8, 8, 8],
         "resnet18": [4, 4, 4, 1, 4, 4, 4, 1, 4, 1, 1, 1, 1, 1, 1, 1, 4]}   # the reference repo's default lists
TORCH_ENGINES = ("torch_ann", "pascal_ann", "torch_dense_snn", "pascal_snn")
ALL_ENGINES = ("torch_ann", "pascal_ann", "torch_dense_snn", "pascal_snn", "float32_ann", "reference_ann",
               "count", "timestep")


def parse_levels(text: str, arch: str) -> list[int]:
    """``--levels``: ``mixed`` (the reference repo's default list) or as ``pascal-ref convert`` takes it."""
    from pascal_ref.convert.architectures import activation_names
    from pascal_ref.convert.levels import levels_per_activation
    if text == "mixed":
        if arch not in MIXED:
            raise SystemExit(f"no mixed list for {arch}; give --levels as comma-separated ints")
        return list(MIXED[arch])
    try:
        return levels_per_activation(text, activation_names(arch, 10), arch, "--levels")
    except ValueError as error:
        raise SystemExit(str(error)) from None


class Setup:
    """The network, its integer model, the batch, and the engines as zero-argument callables."""

    def __init__(self, args, engines):
        from pascal_ref.convert.architectures import build
        from pascal_ref.golden.quantize import quantize
        from pascal_ref.testing import random_state_dict
        self.arch = args.model
        self.levels = parse_levels(args.levels, args.model)
        self.state = random_state_dict(args.model, 10, rng=args.seed)
        self.network = build(args.model, 10, self.levels, self.state)
        rng = np.random.default_rng(args.seed + 1)
        self.x = rng.uniform(0.0, 1.0, (args.batch,) + self.network.input_shape)
        self.x_timestep = self.x[:args.timestep_batch] if args.timestep_batch else self.x
        self.model = quantize(self.network, weight_bits=args.weight_bits, input_bound=1.0)
        self.runs = {}
        self.stats = {}
        for engine in engines:
            self.runs[engine] = getattr(self, f"_make_{engine}")(args)

    # -- ours

    def _make_count(self, args):
        from pascal_ref.fast import count_engine, count_plan
        plan = count_plan(self.model)
        self.stats["count_precisions"] = sorted(set(plan.precisions().values()))
        self.stats["count_max_bound"] = max(plan.bounds().values())
        return lambda: count_engine(plan, self.x, counts=False)

    def _make_timestep(self, args):
        from pascal_ref.fast import timestep_engine
        self.stats["timestep_runs"] = []
        self.stats["timestep_batch"] = len(self.x_timestep)

        def run():
            result = timestep_engine(self.model, self.x_timestep)
            stats = result.stats
            self.stats["timestep_runs"].append((stats.total_events, stats.seconds, sum(stats.macs.values()),
                                                sum(stats.spikes.values())))
            return result
        return run

    def _make_float32_ann(self, args):
        from pascal_ref.fast import float_ann_fast
        return lambda: float_ann_fast(self.network, self.x, np.float32)

    def _make_reference_ann(self, args):
        from pascal_ref.golden.ann import float_ann
        return lambda: float_ann(self.network, self.x, dtype=np.float32)

    # -- PyTorch

    def _torch_input(self):
        import torch
        return torch.tensor(self.x, dtype=torch.float32)

    def _make_torch_ann(self, args):
        from torch_baseline import TorchAnn
        net, x = TorchAnn(self.network).eval(), self._torch_input()
        return lambda: net(x)

    def _make_torch_dense_snn(self, args):
        from torch_baseline import TorchDenseSnn
        net, x = TorchDenseSnn(self.network).eval(), self._torch_input()
        return lambda: net(x)

    def _pascal_model(self, args):
        import torch
        from pascal_repo import pascal_resnet, pascal_vgg16
        if args.pascal_repo is None:
            raise SystemExit("pascal_ann/pascal_snn need --pascal-repo PATH (a checkout of BrainSeek-Lab/PASCAL)")
        if self.arch == "vgg16":
            net = pascal_vgg16(args.pascal_repo, self.levels)
        else:
            net = pascal_resnet(args.pascal_repo, int(self.arch[6:]), self.levels)
        state = {k: torch.tensor(np.asarray(v)) for k, v in self.state.items()}
        state = {k: (v.float() if v.dtype == torch.float64 else v) for k, v in state.items()}
        net.load_state_dict(state)
        return net.eval()

    def _make_pascal_snn(self, args):
        import torch
        net, x = self._pascal_model(args), self._torch_input()

        def run():
            with torch.no_grad():
                return net(x).mean(0)
        return run

    def _make_pascal_ann(self, args):
        import torch
        net, x = self._pascal_model(args), self._torch_input()
        net.set_train()      # ANN mode: QCFS activations (T = 0), no time dimension
        for module in net.modules():
            if hasattr(module, "T_new"):   # ResNet block: unequal L would take the per-timestep path
                module.T = module.T_new
        net.eval()

        def run():
            with torch.no_grad():
                return net(x)
        return run


def _engine_worker(conn, options: dict, engine: str) -> None:
    """One engine in its own process: build it, then run on command ("run", "memory", "stats", "quit")."""
    args = argparse.Namespace(**options)
    setup = Setup(args, [engine])
    setup.state = None                                  # weights live in the engine now
    run = setup.runs[engine]
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "run":
            started = time.perf_counter()
            run()
            conn.send(time.perf_counter() - started)
        elif command == "memory":
            before = _rss_kib("VmRSS")
            reset = _reset_peak()
            run()
            peak = _rss_kib("VmHWM") if reset else _ru_maxrss_kib()
            conn.send({"setup_mib": before / 1024, "peak_mib": peak / 1024, "peak_reset": reset})
        elif command == "stats":
            conn.send(setup.stats)
        else:
            conn.close()
            return


def time_engines(args, engines, memory_engines, pause: float = 0.5):
    """Round-robin timing, each engine in its own process (its thread pools never spin on
    another engine's cores); a pause between runs lets the last one's threads park."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    options = vars(args).copy()
    workers = {}
    try:
        for engine in engines:
            parent, child = context.Pipe()
            process = context.Process(target=_engine_worker, args=(child, options, engine), daemon=True)
            process.start()
            if parent.recv() != "ready":
                raise RuntimeError(f"engine {engine} did not start")
            workers[engine] = (process, parent)
            print(f"  {engine} ready", file=sys.stderr, flush=True)
        times = {engine: [] for engine in engines}
        memory = {}
        for round_index in range(args.repeats + 1):     # round 0 warms up (JIT, caches) and measures memory
            for engine, (_, conn) in workers.items():
                time.sleep(pause)
                conn.send("run")
                elapsed = conn.recv()
                if round_index:
                    times[engine].append(elapsed)
                elif engine in memory_engines:
                    time.sleep(pause)
                    conn.send("memory")
                    memory[engine] = conn.recv()
                print(f"  round {round_index} {engine:<16} {elapsed:8.3f} s", file=sys.stderr, flush=True)
        stats = {}
        for engine, (_, conn) in workers.items():
            conn.send("stats")
            stats.update(conn.recv())
        return times, memory, stats
    finally:
        for process, conn in workers.values():
            try:
                conn.send("quit")
            except OSError:
                pass
            process.join(timeout=10)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return _ru_maxrss_kib()


def _ru_maxrss_kib() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM) of this process."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def report(args, levels, stats: dict, times: dict, memory: dict | None) -> dict:
    med = {engine: statistics.median(values) for engine, values in times.items()}
    lines = [f"{args.model}, L = {levels}, batch {args.batch}, {args.repeats} rounds, {os.cpu_count()} CPUs, "
             f"one process per engine, threads per engine: {args.threads or 'library default'}"]
    lines.append(f"  {'engine':<18}{'median s':>10}{'min s':>9}{'max s':>9}")
    for engine, values in times.items():
        lines.append(f"  {engine:<18}{med[engine]:>10.3f}{min(values):>9.3f}{max(values):>9.3f}")
    ratios = {}

    def ratio(a, b, label):
        if a in med and b in med:
            ratios[label] = med[a] / med[b]
            lines.append(f"  {label:<52}{ratios[label]:>7.2f}x")
    lines.append("ratios of medians (same run):")
    ratio("pascal_snn", "count", "reference SNN / count engine (target >= 4, 6)")
    ratio("torch_dense_snn", "count", "dense-per-step torch SNN / count engine")
    ratio("count", "float32_ann", "count engine / our float32 ANN (target <= 1.3)")
    ratio("float32_ann", "torch_ann", "our float32 ANN / PyTorch ANN (target <= 2)")
    ratio("float32_ann", "pascal_ann", "our float32 ANN / reference ANN mode")
    ratio("count", "torch_ann", "count engine / PyTorch ANN")
    ratio("pascal_snn", "pascal_ann", "reference SNN / reference ANN mode")
    ratio("pascal_snn", "torch_dense_snn", "reference SNN / our dense torch SNN model of it")
    ratio("reference_ann", "float32_ann", "readable float_ann / fast float32 ANN")
    out = {"model": args.model, "levels": levels, "batch": args.batch, "repeats": args.repeats,
           "medians_s": med, "times_s": times, "ratios": ratios, "count": {k: v for k, v in stats.items() if k.startswith("count")}}
    runs = stats.get("timestep_runs")
    if runs:
        runs = runs[1:] or runs                          # drop the warm-up
        rates = [events / seconds for events, seconds, _, _ in runs]
        threads = args.threads or _numba_threads()
        events, _, macs, spikes = runs[0]
        samples = stats["timestep_batch"]
        out["timestep"] = {"batch": samples, "synaptic_events": events, "input_macs": macs,
                           "spikes": spikes, "events_per_s": statistics.median(rates),
                           "events_per_s_per_core": statistics.median(rates) / min(threads, os.cpu_count() or 1)}
        lines.append(f"timestep engine: {events / samples / 1e6:.1f} M synaptic events and "
                     f"{spikes / samples / 1e3:.1f} k spikes per sample (+{macs / samples / 1e6:.1f} M "
                     f"input MACs); median {statistics.median(rates) / 1e6:.0f} M events/s = "
                     f"{out['timestep']['events_per_s_per_core'] / 1e6:.0f} M events/s/core (target >= 20)")
    if memory:
        out["memory_mib"] = memory
        lines.append("peak memory (each engine's process; MiB resident, high-water mark reset before the run):")
        for engine, row in memory.items():
            if "error" in row:
                lines.append(f"  {engine:<18} error: {row['error']}")
            else:
                lines.append(f"  {engine:<18} setup {row['setup_mib']:8.0f}   run peak {row['peak_mib']:8.0f}")
    print("\n".join(lines))
    return out


def _numba_threads():
    import numba
    return numba.get_num_threads()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("vgg16", "resnet18", "resnet34"), default="vgg16")
    parser.add_argument("--levels", default="4", help="one L for all, a comma list, or 'mixed' (the reference's list)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--timestep-batch", type=int, default=0, help="samples for the timestep engine (0: the batch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--engines", default=None, help=f"comma list from {', '.join(ALL_ENGINES)}")
    parser.add_argument("--with-reference", action="store_true", help="also time the readable float_ann")
    parser.add_argument("--pascal-repo", default=None, help="checkout of BrainSeek-Lab/PASCAL (never modified)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--memory-engines", default="count,timestep,float32_ann,torch_ann,pascal_snn")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per engine (BLAS, OpenMP, torch, Numba); 0: library defaults (all cores)")
    parser.add_argument("--json", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.engines:
        engines = [e for e in args.engines.split(",") if e]
    else:
        engines = [e for e in ALL_ENGINES if (args.pascal_repo or not e.startswith("pascal"))
                   and (args.with_reference or e != "reference_ann")]
    unknown = set(engines) - set(ALL_ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines: {', '.join(sorted(unknown))}")
    if args.threads:
        # Read by every library when the engine processes start (they inherit the environment).
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[variable] = str(args.threads)
    memory_engines = [e for e in args.memory_engines.split(",") if e in engines] if args.memory else []
    times, memory, stats = time_engines(args, engines, memory_engines)
    levels = parse_levels(args.levels, args.model)
    out = report(args, levels, stats, times, memory)
    if args.json:
        from pascal_ref.cli.common import write_json
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
