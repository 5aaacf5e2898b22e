"""PMU configuration layouts: defined here once, used by the HDL and packed by
``firmware/compiler/pmu.py``."""

from amaranth import signed, unsigned
from amaranth.lib import data

from hdl.counters import MAX_COUNTERS, ChainConfig
from hdl.packet import flow_bits, vector_layout

__all__ = ["addr_bits", "bank_bits", "bank_config_layout", "write_layout", "read_layout",
           "read_data_layout", "LANE_OFFSET_BITS", "address_config_layout", "address_layout",
           "MAX_BUFFERS", "pmu_config_layout"]

#: Per-lane address offsets are this wide (signed).
LANE_OFFSET_BITS = 16


def addr_bits(params):
    """Word-address width of one PMU (banks x words per bank words)."""
    return (params.pmu_banks * params.pmu_bank_words - 1).bit_length()


def bank_bits(params):
    return params.pmu_banks.bit_length() - 1


def bank_config_layout(params):
    """Which address bits select the bank: ``bank = ((a >> shift) ^ (fold ? a >> fold_shift
    : 0)) mod banks``; the word inside the bank is ``a`` with bits
    ``[shift, shift + log2(banks))`` removed."""
    a = addr_bits(params)
    return data.StructLayout({"shift": range(a), "fold": unsigned(1), "fold_shift": range(a)})


def write_layout(params):
    """One vector write: LANES word addresses (INT32, like every address; the PMU decodes
    the low :func:`addr_bits`), data, and the lanes that write."""
    lanes = params.pcu_lanes
    return data.StructLayout({"addr": data.ArrayLayout(32, lanes),
                              "data": data.ArrayLayout(32, lanes), "mask": unsigned(lanes)})


def read_layout(params):
    """One vector read request: LANES word addresses, the lanes that read, and the
    ``last`` flag and flow ``tag`` the answer carries back."""
    lanes = params.pcu_lanes
    return data.StructLayout({"addr": data.ArrayLayout(32, lanes), "mask": unsigned(lanes),
                              "last": unsigned(1), "tag": unsigned(flow_bits(params))})


def read_data_layout(params):
    """The answer to a read request: LANES words, the request's lane mask and ``last``
    (the vector packet of :func:`hdl.packet.vector_layout`)."""
    return vector_layout(params.pcu_lanes)


def address_config_layout(params):
    """An address pipeline: lane ``l`` of each counter-chain step addresses
    ``base + (sum of the outer counters with their ctr_en bit) + (innermost counter as
    seen by lane l) + lane_offset[l]``; lanes outside the innermost range or outside
    ``[lo, hi)`` are off (predication). Counters without ``ctr_en`` only repeat (e.g. a
    loop over buffers). ``dyn``: at the start of every window of counter ``dyn.level``
    the pipeline reads, from its scalar input, a value added to ``base`` (``dyn.base``)
    and then the window's ``hi`` bound (``dyn.hi``), in that order."""
    return data.StructLayout({
        "chain": ChainConfig, "base": signed(32), "ctr_en": unsigned(MAX_COUNTERS),
        "dyn": data.StructLayout({"base": unsigned(1), "hi": unsigned(1),
                                  "level": range(MAX_COUNTERS)}),
        "lane_offset": data.ArrayLayout(signed(LANE_OFFSET_BITS), params.pcu_lanes),
        "lo": signed(32), "hi": signed(32),
    })


def address_layout(params):
    """One step of an address pipeline: LANES addresses, the lanes on, the chain's
    counter-wrap bits, ``last``, and ``tag``: the low bits of the counter the pipeline's
    ``tag_level`` input selects, shifted right by ``tag_shift``."""
    return data.StructLayout({
        "addr": data.ArrayLayout(32, params.pcu_lanes), "mask": unsigned(params.pcu_lanes),
        "wrap": unsigned(MAX_COUNTERS), "last": unsigned(1),
        "tag": unsigned(flow_bits(params)),
    })


#: N-buffering depth: 1 (single buffer) to 4.
MAX_BUFFERS = 4


def pmu_config_layout(params):
    """One PMU: bank bits, the write and read address pipelines, and N-buffering.

    Buffer ``i`` is the ``buf_words`` words from ``i * buf_words`` (added to both
    pipelines' addresses). A write window (one run of write counter ``w_level``) fills a
    buffer; a read window (one run of read counter ``r_level``) drains one. The writer
    may start a window while fewer than ``nbuf`` buffers are full; the reader while at
    least one is.

    ``r_flow``: with ``en``, each vector read leaves with flow id = the value of read
    counter ``level`` shifted right by ``shift`` (low bits; else flow 0), so one read
    stream can feed several consumers in turn (e.g. a row to one PCU, then a row to
    another). ``r_skip``: a read step with no lane on (all predicated off) sends nothing,
    so a pattern can run past its data's edges (e.g. two consumers a few rows apart).
    """
    return data.StructLayout({
        "banks": bank_config_layout(params),
        "write": address_config_layout(params), "read": address_config_layout(params),
        "nbuf": range(1, MAX_BUFFERS + 1),
        "buf_words": range(params.pmu_banks * params.pmu_bank_words + 1),
        "w_level": range(MAX_COUNTERS), "r_level": range(MAX_COUNTERS),
        "r_flow": data.StructLayout({"en": unsigned(1), "level": range(MAX_COUNTERS),
                                     "shift": range(32)}),
        "r_skip": unsigned(1),
    })
