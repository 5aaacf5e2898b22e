"""Tier 1: the socket's host registers are described once (``hdl.socket.host_registers``):
the socket's ports are exactly those registers plus its memory-side ports, and
``host_port`` names them as the generated Verilog does, refusing what does not exist."""

import gc

import pytest

from hdl.params import PRESETS
from hdl.socket import Socket, host_port, host_registers

SMALL = PRESETS["small"]


# The socket is built for its signature only, never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_socket_ports_are_the_register_map():
    regs = host_registers(SMALL)
    socket = Socket(SMALL)
    members = socket.signature.members
    for name, member in regs.items():
        assert members[name].flow == member.flow and members[name].dimensions == member.dimensions
    others = set(members) - set(regs)
    assert others == {"host", "dma", "hbm", "ddr"}
    del socket, members         # collected here, under this test's warning filter
    gc.collect()


def test_host_port_names_and_errors():
    assert host_port(SMALL, "go") == "go"
    assert host_port(SMALL, "fault_addr", SMALL.agcus - 1) == f"fault_addr__{SMALL.agcus - 1}"
    assert host_port(SMALL, "vec_counters", 7) == "vec_counters__7"
    with pytest.raises(KeyError, match="no host register 'gone'"):
        host_port(SMALL, "gone")
    with pytest.raises(IndexError, match="'go': is not an array"):
        host_port(SMALL, "go", 0)
    with pytest.raises(IndexError, match=r"index 0 \.\. 1, not 2"):
        host_port(SMALL, "fault_addr", 2)
    with pytest.raises(IndexError, match="not None"):
        host_port(SMALL, "fault_addr")
