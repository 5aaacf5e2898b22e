"""Packets units exchange on the RDN: the vector and scalar bodies and the header the
switches route by. Defined once, below every unit that sends or receives them (PCU, PMU,
AGCU, the RDN itself) and the firmware that packs them."""

from amaranth import unsigned
from amaranth.lib import data

__all__ = ["vector_layout", "scalar_layout", "PORT_BITS", "flow_bits", "coord_bits",
           "header_layout", "packet_layout", "vector_packet_layout", "scalar_packet_layout"]

#: An output port number (0 .. N_OUT-1 of a switch, see ``hdl.rdn.config``) in a header.
PORT_BITS = 3


def vector_layout(lanes):
    """A vector packet between units: LANES words, the valid-lane mask, and the last flag
    of the producing loop (the ``done`` token rides on the final vector)."""
    return data.StructLayout({
        "data": data.ArrayLayout(32, lanes), "mask": unsigned(lanes), "last": unsigned(1),
    })


#: A scalar packet: one word and the last flag of the producing loop.
scalar_layout = data.StructLayout({"data": unsigned(32), "last": unsigned(1)})


def flow_bits(params):
    return (params.rdn_flows - 1).bit_length()


def coord_bits(n):
    return max(1, (n - 1).bit_length())


def header_layout(params):
    """Packet header.

    ``dyn`` selects dimension-order routing to switch (``x``, ``y``) = (column, row),
    leaving there by output ``port``; otherwise each switch input looks ``flow`` up in
    its flow table (and rewrites it with the table's new flow id).
    """
    return data.StructLayout({
        "dyn": unsigned(1),
        "flow": unsigned(flow_bits(params)),
        "x": unsigned(coord_bits(params.cols)),
        "y": unsigned(coord_bits(params.rows)),
        "port": unsigned(PORT_BITS),
    })


def packet_layout(params, body):
    """Body first, so its 32-bit words stay word-aligned in the packet."""
    return data.StructLayout({"body": body, "hdr": header_layout(params)})


def vector_packet_layout(params):
    return packet_layout(params, vector_layout(params.pcu_lanes))


def scalar_packet_layout(params):
    return packet_layout(params, scalar_layout)
