"""Co-simulation of the generated hardware against the golden model, at the simulators' own speed.

Layers (each imports only those below it; nothing in ``pascal_ref`` or
``pascal_hdl`` imports this package):

* :mod:`~pascal_cosim.payload`: payload layouts as plain data, packing.
* :mod:`~pascal_cosim.harness`: Amaranth harnesses (stimulus ring, LFSR
  back-pressure, capture rings, stream-contract checkers, ``done``) and the
  Verilog clock wrapper.
* :mod:`~pascal_cosim.sources`: memory images from ``.hex``, the Icarus fix.
* :mod:`~pascal_cosim.runner`: build once per design hash, run (cocotb_tools.runner).
* :mod:`~pascal_cosim.components`, :mod:`~pascal_cosim.scoreboard`,
  :mod:`~pascal_cosim.testbench`: the cocotb side (stream driver, capture
  monitor, in-order scoreboard, the one cocotb test).
* :mod:`~pascal_cosim.bench`, :mod:`~pascal_cosim.core`,
  :mod:`~pascal_cosim.neuron`: benches of the network core, the layer engine
  and the neuron unit.
* :mod:`~pascal_cosim.uart`: the host link (``pascal_hdl.board.hostlink``) behind its UART,
  cocotbext-uart and the driver's protocol code on the host side.
* :mod:`~pascal_cosim.axis`: the AXI4-Stream wrapper (``pascal_hdl.board.axis``) with cocotbext-axi's
  source and sink under random pauses; the handshakes replayed through its cycle model.
* :mod:`~pascal_cosim.resets`: the network core driven cycle by cycle with ``rst`` at random cycles in the
  middle of samples, and the judge of what comes out after each reset.
* :mod:`~pascal_cosim.cli`: ``pascal-ref cosim``.

Nothing is imported here: the cocotb testbench imports its modules inside
the simulator without Amaranth.
"""
