"""The core on a real board: the host-link top level (UART), its framed protocol, the host
driver, board builds (bitstreams on open tools) and drop-in SoC interfaces (AXI4-Stream)."""
