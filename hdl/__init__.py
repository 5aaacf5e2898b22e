"""OpenRDU gateware (Amaranth)."""
