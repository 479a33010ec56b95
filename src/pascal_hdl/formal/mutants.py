"""Designs broken on purpose: each proof must find a counterexample on them.

A :class:`Mutation` replaces one exact piece of a design module's source (it
must occur exactly once, so a mutation that no longer applies after an edit
of the design is an error, never a silent no-op) and loads the result as a
fresh module beside the package, so the harnesses can build it like the
real design.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

from pascal_ref.errors import PascalError

__all__ = ["Mutation", "MutationError", "load_mutant", "NEURON_MUTATIONS", "ENGINE_MUTATIONS"]

_serial = itertools.count()


class MutationError(PascalError):
    """A mutation does not apply to the current design source."""


@dataclass(frozen=True)
class Mutation:
    """Replace ``find`` with ``replace`` (exactly once) in module ``target``."""

    name: str
    target: str
    find: str
    replace: str
    description: str

    def apply(self, source: str) -> str:
        found = source.count(self.find)
        if found != 1:
            raise MutationError(f"mutation '{self.name}': expected exactly one {self.find!r} in {self.target}, "
                                f"found {found}; update the mutation to the design")
        return source.replace(self.find, self.replace)


def load_mutant(mutation: Mutation, workdir):
    """Write the mutated source of ``mutation.target`` into ``workdir`` and
    import it as a new module of the same package (relative imports work)."""
    original = importlib.import_module(mutation.target)
    source = mutation.apply(inspect.getsource(original))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = mutation.target.rsplit(".", 1)[-1]
    path = workdir / f"{stem}_mutant_{mutation.name}.py"
    path.write_text(source)
    package = mutation.target.rsplit(".", 1)[0]
    name = f"{package}._mutant_{stem}_{mutation.name}_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


NEURON_MUTATIONS = (
    Mutation("fire_gt", "pascal_hdl.gateware.neuron",
             "fire = active & (charged >= self.theta)", "fire = active & (charged > self.theta)",
             "the firing comparison v >= theta flipped to v > theta (state update only)"),
    Mutation("no_inhibitory", "pascal_hdl.gateware.neuron",
             "self.inhibitory.eq((stage == Stage.SETTLE) & (charged < 0))", "self.inhibitory.eq(0)",
             "stage 2 without its inhibitory branch"),
    Mutation("burst_ge", "pascal_hdl.gateware.neuron",
             "self.spike.eq((stage == Stage.TRANSMIT) & (c > step))",
             "self.spike.eq((stage == Stage.TRANSMIT) & (c >= step))",
             "the transmitted spike c > t flipped to c >= t"),
    Mutation("settle_min", "pascal_hdl.gateware.neuron",
             "settle_steps.eq(Mux(self.t_in > self.t_out, self.t_in, self.t_out) - 1)",
             "settle_steps.eq(Mux(self.t_in < self.t_out, self.t_in, self.t_out) - 1)",
             "stage 2 lasts min(T1,T2)-1 steps instead of max(T1,T2)-1"),
    Mutation("membrane_narrow", "pascal_hdl.gateware.neuron",
             '"v": Out(signed(self.widths.v_width)),', '"v": Out(signed(self.widths.v_width - 1)),',
             "the membrane register one bit narrower than its derived width (overflow)"),
)

ENGINE_MUTATIONS = (
    Mutation("subtract_weight", "pascal_hdl.gateware.engine",
             "a_wr.data.word_select(k, aw).eq(acc_lanes[k] + weight)",
             "a_wr.data.word_select(k, aw).eq(acc_lanes[k] - weight)",
             "the accumulator subtracts the weight instead of adding it"),
    Mutation("stale_accumulator", "pascal_hdl.gateware.engine",
             "a_rd = acc.read_port(transparent_for=(a_wr,))", "a_rd = acc.read_port()",
             "the accumulator read port not transparent: a back-to-back spike reads the old sum"),
    Mutation("accept_equal_index", "pascal_hdl.gateware.engine",
             "(~first & (payload.index <= prev_index))", "(~first & (payload.index < prev_index))",
             "an event repeating the previous index is accumulated instead of dropped"),
    Mutation("emit_zero_skipped_wrong", "pascal_hdl.gateware.engine",
             "wanted = (count != 0) | is_last", "wanted = (count > 1) | is_last",
             "a hidden neuron with count 1 is skipped as if silent (hidden engine)"),
)
