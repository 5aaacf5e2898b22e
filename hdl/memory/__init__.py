"""Off-chip memory side: HBM and DDR controller stubs, host link, top-level network."""
