"""Reconfigurable dataflow network: packet-switched vector and scalar fabrics with
per-hop credit flow control, and a circuit-switched control-token fabric."""
