"""Shared fixtures: the one socket model the socket and waveform tests run on.

``small`` with jittered memory (every HBM/DDR request 0..15 cycles late), built once with
tracing: the socket tests run it without a waveform, the waveform tests with one — one
Verilator build of the socket for the whole regression.
"""

import pytest

from hdl.params import PRESETS
from sim.designs import build_design
from tb.lib.stress import jittered

#: The socket every tier-3 socket test runs on.
TEST_SOCKET = jittered(PRESETS["small"])


@pytest.fixture(scope="session")
def socket_params():
    return TEST_SOCKET


@pytest.fixture(scope="session")
def socket_model():
    return build_design("socket", TEST_SOCKET, waves=True)
