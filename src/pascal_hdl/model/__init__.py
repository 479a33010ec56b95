"""Cycle-level Python models of the gateware (no Amaranth): same handshakes, same cycles, same values."""
