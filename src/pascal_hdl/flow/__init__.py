"""From a model to files: Verilog, memory images and manifest generation; FPGA synthesis."""
