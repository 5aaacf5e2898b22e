"""RDN layouts: packet headers, switch and control-switch configuration, port counters.

Defined here once; the HDL elaborates from them and ``firmware/compiler/route.py``
packs tables with them.

Port numbering (the same for the vector and the scalar fabric):

* inputs  ``N E S W L``       0..3 are links from the neighbours, 4 is the unit's output
  (the unit *injects* packets there);
* outputs ``N E S W L0 L1``   0..3 are links to the neighbours, 4 and 5 deliver to the
  unit (a PCU's ``vin0``/``vin1`` or ``sin0``; a PMU's ``vin``/``wsin``/``rsin``).

On the west edge of column 0 and the east edge of the last column the W/E link is an
*edge port*: the attachment point of an AGCU, a ready/valid stream like a local port.
Other links that leave the grid are not connected; routing to them is an error.
"""

from amaranth import unsigned
from amaranth.lib import data

from hdl.packet import PORT_BITS, flow_bits

__all__ = ["N", "E", "S", "W", "LINKS", "LOCAL_IN", "LOCAL_OUT", "N_IN", "N_OUT", "OUT_L0",
           "IN_LOCAL", "PORT_NAMES_IN", "PORT_NAMES_OUT", "RATE_ONE",
           "BURST_BITS", "COUNTER_BITS", "route_entry_layout", "throttle_layout", "switch_config_layout",
           "fabric_config_layout", "CTRL_LOCAL", "ctrl_inputs", "ctrl_outputs",
           "ctrl_sel_bits", "control_config_layout", "control_fabric_config_layout",
           "rdn_config_layout", "port_counter_layout", "switch_counters_layout",
           "STEP", "OPPOSITE", "ctrl_wire"]

N, E, S, W = 0, 1, 2, 3
#: (dx, dy) of a hop in each direction (y grows southwards), and the way back.
STEP = {N: (0, -1), S: (0, 1), E: (1, 0), W: (-1, 0)}
OPPOSITE = {N: S, S: N, E: W, W: E}
#: Neighbour links of a switch, and the opposite direction of each.
LINKS = 4
#: Unit-side ports per fabric: packets from the unit, and deliveries to it.
LOCAL_IN = 1
LOCAL_OUT = 2
N_IN = LINKS + LOCAL_IN
N_OUT = LINKS + LOCAL_OUT
IN_LOCAL = LINKS
OUT_L0 = LINKS
PORT_NAMES_IN = ("N", "E", "S", "W", "L")
PORT_NAMES_OUT = ("N", "E", "S", "W", "L0", "L1")
#: Token-bucket rates are in 1/RATE_ONE packets per cycle (RATE_ONE = one per cycle).
RATE_ONE = 256
BURST_BITS = 8
#: Width of every performance counter.
COUNTER_BITS = 32

#: Unit-side control tokens per switch (a PCU's ``done`` and ``tok_out`` go in, its
#: ``tok_in`` and a spare come out).
CTRL_LOCAL = 2


def route_entry_layout(params):
    """One flow-table entry: the outputs the flow leaves by (a bit per output port; more
    than one is multicast, none means the flow is not routed here) and its new flow id."""
    return data.StructLayout({"out": unsigned(N_OUT), "flow": unsigned(flow_bits(params))})


#: Token bucket of an injection port: when ``en``, the port accepts a packet only while
#: the bucket holds a whole token; it fills by ``rate``/RATE_ONE per cycle up to ``burst``.
throttle_layout = data.StructLayout({
    "en": unsigned(1),
    "rate": unsigned((RATE_ONE).bit_length()),
    "burst": unsigned(BURST_BITS),
})


def switch_config_layout(params):
    """One switch of one fabric: a flow table per input and a token bucket per input
    (used on injection ports only: the local input and edge ports)."""
    return data.StructLayout({
        "table": data.ArrayLayout(data.ArrayLayout(route_entry_layout(params), params.rdn_flows),
                                  N_IN),
        "throttle": data.ArrayLayout(throttle_layout, N_IN),
    })


def fabric_config_layout(params):
    """Every switch of one fabric, row-major: ``switch[r * cols + c]``."""
    return data.ArrayLayout(switch_config_layout(params), params.rows * params.cols)


def ctrl_inputs(params):
    """Token wires into a control switch: ``tracks`` per link (N, E, S, W), then the unit's."""
    return LINKS * params.rdn_tracks + CTRL_LOCAL


ctrl_outputs = ctrl_inputs


def ctrl_wire(params, port, track):
    """Wire number of ``track`` on link ``port`` (N, E, S, W), or of unit token ``track``
    when ``port`` is ``LINKS``; inputs and outputs are numbered alike."""
    return port * params.rdn_tracks + track


def ctrl_sel_bits(params):
    return ctrl_inputs(params).bit_length()


def control_config_layout(params):
    """One control switch: for every output wire (same numbering as the inputs), 0 for
    none or 1 + the input wire it carries, one cycle later."""
    return data.StructLayout({
        "sel": data.ArrayLayout(unsigned(ctrl_sel_bits(params)), ctrl_outputs(params)),
    })


def control_fabric_config_layout(params):
    return data.ArrayLayout(control_config_layout(params), params.rows * params.cols)


def rdn_config_layout(params):
    """The whole network: vector fabric, scalar fabric, control fabric."""
    return data.StructLayout({
        "vec": fabric_config_layout(params),
        "sca": fabric_config_layout(params),
        "ctl": control_fabric_config_layout(params),
    })


#: Counters of one port direction. Input: packets accepted, ``stall`` = offered but the
#: buffer was full, ``starve`` = nothing offered, ``throttled`` = offered, room, but no
#: token. Output: packets sent, ``stall`` = a packet waiting for it but no credit (or
#: the unit not ready), ``starve`` = credit but nothing to send; ``throttled`` unused.
port_counter_layout = data.StructLayout({
    "packets": unsigned(COUNTER_BITS),
    "stall": unsigned(COUNTER_BITS),
    "starve": unsigned(COUNTER_BITS),
    "throttled": unsigned(COUNTER_BITS),
})


def switch_counters_layout():
    return data.StructLayout({
        "inp": data.ArrayLayout(port_counter_layout, N_IN),
        "out": data.ArrayLayout(port_counter_layout, N_OUT),
    })
