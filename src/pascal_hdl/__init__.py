"""pascal_hdl: the PASCAL spiking accelerator, generated from an integer model (see ``docs/hardware.md``).

Amaranth-free: :mod:`pascal_hdl.widths` (register widths), :mod:`pascal_hdl.config`
(:class:`~pascal_hdl.config.LayerConfig`, :class:`~pascal_hdl.config.CoreConfig`,
derived from the integer model) and :mod:`pascal_hdl.model` (cycle-level Python
models). Needs the ``hdl`` extra: :mod:`pascal_hdl.gateware` (the Amaranth
components), :mod:`pascal_hdl.flow` (Verilog generation, synthesis) and
:mod:`pascal_hdl.formal` (SymbiYosys proofs).
"""
