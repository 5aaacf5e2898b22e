"""Tier 3: the socket on Verilator through cocotb — program load by the config
controller, launches and kernel looping by the kernel sequencer, error stops — with
random memory latency (every HBM/DDR request 0..mem_jitter cycles late: the kernels must
not depend on timing). OPENRDU_SEED overrides the seed; every failure names it."""

import os

import pytest

from conftest import TEST_SOCKET
from sim.cocotb_run import SimulationError, run_cocotb
from tb.lib.args import tb_args

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261130"))
#: ``small`` with jittered memory (tests/conftest.py): the socket all these tests run on.
SMALL = TEST_SOCKET


@pytest.fixture(scope="module")
def model(socket_model):
    return socket_model


def run(model, tmp_path, testcase, **args):
    targs = tb_args("tb.test_socket", testcase, params=SMALL.to_dict(), **args)
    try:
        return run_cocotb(model, targs, test_dir=tmp_path).outputs
    except SimulationError as e:
        raise AssertionError(f"{testcase}, seed {targs.seed} (OPENRDU_SEED={SEED}): {e}") \
            from None


@pytest.mark.parametrize("k,n,iterations,ddr", [(0, 37, 1, False), (1, 64, 3, True),
                                                (2, 300, 2, False)])
def test_scale_bias_end_to_end(model, tmp_path, k, n, iterations, ddr):
    o = run(model, tmp_path, "scale_bias", seed=SEED + k, n=n, iterations=iterations, ddr=ddr)
    assert o["load_cycles"] >= o["beats"]


@pytest.mark.parametrize("k,m,n,kk,bias,relu,bf16", [
    (0, 28, 8, 16, False, False, False),     # one tile
    (1, 40, 20, 33, False, False, False),    # 2 x 3 tiles, none full, odd k
    (2, 5, 3, 7, False, True, False),        # smaller than one tile, ReLU epilogue
    (3, 60, 17, 24, False, True, True),      # ReLU + BF16 epilogue
    (4, 33, 12, 20, True, True, True),       # bias + ReLU + BF16 epilogue
    (5, 9, 20, 5, True, False, False),       # bias alone
])
def test_gemm_end_to_end(model, tmp_path, k, m, n, kk, bias, relu, bf16):
    """On as many PCUs as the shape and the array allow (the default): one per column tile
    up to every PCU of the array (the small grid places all four, their results through
    the two AGCUs' store streams); bit-exact (checked in the test)."""
    o = run(model, tmp_path, "gemm", seed=SEED + 40 + k, m=m, n=n, k=kk, bias=bias,
            relu=relu, bf16=bf16)
    want = min(-(-n // SMALL.pcu_lanes), SMALL.pcus)
    assert o["active_pcus"] == want, (o["active_pcus"], want)
    # The PCUs cannot beat their peak: STAGES x LANES MACs per cycle each.
    assert o["macs"] <= o["cycles"] * o["active_pcus"] * SMALL.pcu_stages * SMALL.pcu_lanes


@pytest.mark.parametrize("k,m,n,kk,bias,c_tiles", [
    (0, 61, 19, 45, False, False), (1, 5, 3, 8, True, False), (2, 30, 32, 64, False, True),
    (3, 30, 64, 300, True, False), (4, 61, 64, 300, False, True)])
def test_gemm_on_two_pcus(model, tmp_path, k, m, n, kk, bias, c_tiles):
    """The column tiles split over two PCUs (odd tile counts padded), C through both
    AGCUs — in groups of column tiles where a PCU's share of B outgrows its PMU (k = 300:
    four groups, A streamed once per group), C row-major or tile by tile: bit-exact
    (checked in the test); more MACs per cycle than one PCU can do when the halves are busy
    (not for a single tile)."""
    o = run(model, tmp_path, "gemm", seed=SEED + 70 + k, m=m, n=n, k=kk, bias=bias, pcus=2,
            c_tiles=c_tiles)
    assert o["mismatches"] == 0
    assert o["macs"] <= o["cycles"] * 2 * SMALL.pcu_stages * SMALL.pcu_lanes


@pytest.mark.parametrize("k,m,n,kk,bias,c_tiles", [
    (0, 61, 40, 45, False, False),      # 5 column tiles padded to 8: 2 per PCU
    (1, 5, 30, 1, True, True),          # M under one tile, K = 1 (+ the bias step)
    (2, 61, 64, 300, True, True),       # shares of B in groups, A streamed per group
    (3, 3, 7, 2, False, False)])        # M and N under one tile: 3 PCUs of zeros
def test_gemm_on_every_pcu(model, tmp_path, k, m, n, kk, bias, c_tiles):
    """The column tiles over all four PCUs of the small grid — three of them storing C
    through one AGCU's store streams (each PCU's results a flow of its own into the AGCU,
    told apart by flow id), the fourth through the other AGCU; flows routed off dimension
    order where that would share links: bit-exact (checked in the test)."""
    o = run(model, tmp_path, "gemm", seed=SEED + 90 + k, m=m, n=n, k=kk, bias=bias,
            pcus=SMALL.pcus, c_tiles=c_tiles)
    assert o["mismatches"] == 0 and o["active_pcus"] == SMALL.pcus
    assert o["macs"] <= o["cycles"] * SMALL.pcus * SMALL.pcu_stages * SMALL.pcu_lanes


@pytest.mark.parametrize("k,m,n,kk,bias,pcus", [
    (0, 61, 19, 45, False, 1), (1, 5, 30, 8, False, 1),
    (2, 61, 19, 45, False, 2), (3, 40, 20, 33, True, 2),
    (4, 30, 256, 200, False, 2),    # shares of B in groups: each row tile loaded per group
])
@pytest.mark.parametrize("c_tiles", [False, True], ids=["c_rows", "c_tiles"])
def test_gemm_with_row_major_a_through_a_transposing_pmu(model, tmp_path, k, m, n, kk, bias,
                                                          pcus, c_tiles):
    """A row-major (as another kernel writes it, or the host with a ones column for the
    bias), transposed by a PMU on chip that feeds one PCU or multicasts to several: the
    same C as the reference backend and the PCU reference (checked in the test)."""
    o = run(model, tmp_path, "gemm", seed=SEED + 50 + k, m=m, n=n, k=kk, bias=bias, a_rows=1,
            pcus=pcus, c_tiles=c_tiles)
    assert o["mismatches"] == 0 and o["active_pcus"] == pcus
    assert o["macs"] <= o["cycles"] * pcus * SMALL.pcu_stages * SMALL.pcu_lanes


@pytest.mark.parametrize("k,rows,n,spread", [(0, 20, 53, 3.0), (1, 9, 128, 10.0),
                                              (2, 3, 5, 1.0)])
def test_softmax_end_to_end(model, tmp_path, k, rows, n, spread):
    """Rows longer than the lanes (and one shorter) with NaN padding lanes; the test
    itself checks bit-exactness and the float64 bound."""
    o = run(model, tmp_path, "softmax", seed=SEED + 10 + k, rows=rows, n=n, spread=spread)
    assert o["mismatches"] == 0 and o["max_rel_err"] <= o["rel_bound"]
    assert o["load_cycles"] >= o["beats"]


@pytest.mark.parametrize("k,seq,d", [(0, 40, 32), (1, 5, 64), (2, 128, 32), (3, 72, 64)])
def test_attention_fused_and_unfused(model, tmp_path, k, seq, d):
    """Fused and unfused attention: bit-exact with their references, within the float64
    bound (checked in the test); fusion takes fewer cycles than kernel-by-kernel (the
    paper-effect margin is measured by ``make bench``)."""
    o = run(model, tmp_path, "attention", seed=SEED + 20 + k, seq=seq, head_dim=d)
    assert o["mismatches"] == 0
    assert o["fused"]["cycles"] < o["unfused"]["cycles"], o
    # The report's cycles are the fused kernel's execution, program load separate.
    assert o["cycles"] == o["fused"]["exec_cycles"] and o["load_cycles"] > 0
    assert o["fused"]["load_cycles"] >= o["beats"]


@pytest.mark.parametrize("k,seq,d,heads", [(0, 24, 16, 3), (1, 40, 8, 2)])
def test_attention_heads_by_kernel_looping(model, tmp_path, k, seq, d, heads):
    """Several heads by one looping launch and by one launch each: every head equals its
    reference (checked in the test); looping loads the program once."""
    o = run(model, tmp_path, "attention_heads", seed=SEED + 30 + k, seq=seq, head_dim=d,
            heads=heads)
    assert o["looped"]["load_cycles"] < o["launches"]["load_cycles"]
    assert o["looped"]["cycles"] < o["launches"]["cycles"]


@pytest.mark.parametrize("k,n,iterations", [(0, 40, 4), (1, 100, 3)])
def test_kernel_looping_matches_separate_launches(model, tmp_path, k, n, iterations):
    o = run(model, tmp_path, "looping", seed=SEED + 10 + k, n=n, iterations=iterations)
    assert o["looped_load"] < o["launches_load"]


@pytest.mark.parametrize("k,m,n,kk,layers", [(0, 12, 8, 16, 4), (1, 1, 8, 40, 3)])
def test_layer_loop_by_kernel_looping_and_by_launches(model, tmp_path, k, m, n, kk, layers):
    """Looped, resident and reload launches give the same bits (checked in the test)."""
    o = run(model, tmp_path, "layer_loop", seed=SEED + 50 + k, m=m, n=n, k=kk, layers=layers)
    # Looping and resident launches load the program once; kernel-by-kernel loads it per
    # layer (each load at least one cycle per config beat; memory jitter varies the rest).
    for mode in ("looped", "resident"):
        assert o["beats"] <= o[mode]["load_cycles"] < 2 * o["beats"], (mode, o)
    assert o["reload"]["load_cycles"] >= layers * o["beats"]
    assert o["looped"]["launched"] == 1 and o["resident"]["launched"] == layers
    # One pipelined run has no synchronization boundary between layers: it must beat the
    # same work launched layer by layer even with the program resident.
    assert o["looped"]["exec_cycles"] < o["resident"]["exec_cycles"], o
    assert o["resident"]["cycles"] < o["reload"]["cycles"], o


@pytest.mark.parametrize("k,n,kk,layers,shares,packed,chain", [
    (0, 20, 37, 3, 0, False, False), (1, 9, 8, 7, 1, False, False),
    (2, 3, 70, 2, 2, False, False), (3, 21, 37, 3, 0, True, False),
    (4, 6, 16, 6, 2, True, False), (5, 21, 21, 4, 0, False, True),
    (6, 19, 19, 5, 0, True, True)])
def test_gemv_layers_by_kernel_looping(model, tmp_path, k, n, kk, layers, shares, packed,
                                       chain):
    """Decode-style GEMV layers (weights streamed through every AGCU — FP32, or BF16
    packed two per word with each word feeding two PCUs —, x by the load2 prologue, row
    results through the store path; chained: each layer's input the output before it,
    through HBM): looped, resident and reload launches give the same bits, the reference
    backend's (checked in the test, each layer also against float64)."""
    o = run(model, tmp_path, "gemv_loop", seed=SEED + 90 + k, n=n, k=kk, layers=layers,
            shares=shares, packed=packed, chain=chain)
    assert o["shares"] == (shares or (4 if packed else 2))
    assert o["looped"]["launched"] == 1 and o["resident"]["launched"] == layers
    if chain:
        # Each layer waits for the one before through memory, looped or not; the looped
        # run saves the launch records and restarts.
        assert o["looped"]["cycles"] < o["resident"]["cycles"], o
    else:
        assert o["looped"]["exec_cycles"] < o["resident"]["exec_cycles"], o
    # Every weight is read once per run: the HBM traffic covers the compulsory bytes.
    assert o["looped"]["hbm_bytes"] >= o["compulsory_bytes"], o


def test_gemv_weights_switched_in_from_ddr_by_a_copy_record(model, tmp_path):
    """The looped run's list starts with a copy record: the sequencer has the DMA engine
    copy the (packed) weights DDR -> HBM, then launches the kernel that reads them — the
    test checks every layer bit for bit, so the copy was whole and done first."""
    p = TEST_SOCKET
    o = run(model, tmp_path, "gemv_loop", seed=SEED + 98, n=21, k=37, layers=3, packed=1,
            ddr=1)
    assert o["looped"]["launched"] == 2 and o["resident"]["launched"] == 3, o
    # A copy cannot beat DDR: its bytes at the DDR's peak rate, after one read latency.
    words = o["copied_words"]
    assert words > 0 and o["looped"]["copy_cycles"] >= (
        4 * words / p.ddr_bytes_per_cycle + p.ddr_latency), o
    assert o["resident"]["copy_cycles"] == 0, o


@pytest.mark.parametrize("k,order,d,layers,packed", [
    (0, "0,1,0,2,1,1", 40, 2, 1),     # d not a multiple of the lanes; hits and evictions
    (1, "", 16, 3, 0),                 # FP32 weights, the order drawn from the seed
])
def test_coe_requests_hit_and_miss_expert_slots(model, tmp_path, k, order, d, layers, packed):
    """Composition of Experts: three experts in DDR, two HBM slots (LRU); each request is
    routed on the device (router GEMV + argmax: logits and choice bit-exact against the
    reference backend, checked in the test) to the expert its input was made for; its
    layer outputs are bit-exact against the reference backend and within float64 (checked
    in the test); a miss copies the expert by a copy record, a hit does not."""
    p = TEST_SOCKET
    requests = len(order.split(",")) if order else 6
    o = run(model, tmp_path, "coe", seed=SEED + 110 + k, experts=3, slots=2,
            requests=requests, d=d, layers=layers, packed=packed, order=order)
    reqs = o["requests"]
    # The inputs are made for their experts with a wide margin: the device's choice is
    # the one they were meant for, and float64's.
    assert all(q["expert"] == q["meant"] == q["float64_choice"] for q in reqs), reqs
    if order:
        # LRU over two slots: 0, 1 miss; 0 hits; 2 evicts 1; 1 evicts 0; 1 hits.
        assert [q["hit"] for q in reqs] == [False, False, True, False, False, True], reqs
        assert [q["expert"] for q in reqs] == [0, 1, 0, 2, 1, 1], reqs
    # Every request loads the router's two programs and the expert's (the router's take
    # the tile in between): a config beat a cycle at most.
    assert all(q["load_cycles"] >= o["request_beats"] for q in reqs), (o["request_beats"], reqs)
    words = o["expert_words"]
    for q in reqs:
        # A switch cannot beat DDR's peak (after one read latency); a hit copies nothing.
        assert (q["switch_cycles"] == 0 if q["hit"] else
                q["switch_cycles"] >= 4 * words / p.ddr_bytes_per_cycle + p.ddr_latency), q
    # Nor can the host link beat its own peak.
    assert o["switch"]["host_cycles"] >= 4 * words / p.host_bytes_per_cycle, o["switch"]


@pytest.mark.parametrize("k,d,hidden,layers,tokens,packed,batch,act", [
    (0, 20, 24, 1, 9, True, 1, "silu"),     # a cache longer than a vector of the lanes
    (1, 32, 40, 2, 1, False, 2, "relu")])
def test_decoder_generates_tokens_bit_exactly(model, tmp_path, k, d, hidden, layers, tokens,
                                              packed, batch, act):
    """LLM decode under memory jitter on two seeds, batch 1 and 2 (d not a multiple of the
    lanes, BF16 and FP32 weights, SiLU and ReLU): every activation, both KV caches, the
    logits and each next token bit-exact against the reference backend, every step of
    every sequence within its float64 bound (checked in the test, position by position)."""
    o = run(model, tmp_path, "decoder", seed=SEED + 120 + k, d_model=d, hidden=hidden,
            layers=layers, tokens=tokens, packed=packed, batch=batch, act=act)
    toks = o["tokens"]
    assert [q["position"] for q in toks] == list(range(tokens))
    # Each position's inputs are the one before's outputs (greedy decoding).
    assert all(a["output"] == b["input"] for a, b in zip(toks, toks[1:])), toks
    # Every record ran: an embedding copy a sequence, 14 kernels a layer and 3 more.
    assert all(q["launched"] == batch + 14 * layers + 3 and q["copy_cycles"] > 0
               for q in toks), toks
    # Every sequence reads the weights (a looped kernel's weight stride is 0), and HBM
    # cannot beat its peak.
    cycles = sum(q["cycles"] for q in toks)
    assert tokens * batch * o["weight_bytes"] <= o["hbm_bytes"] <= cycles * \
        SMALL.hbm_peak_bytes_per_cycle, o
    # A batch also ran as a launch per sequence (program resident, then reloaded), with
    # the same tokens and final buffers (checked in the test); each baseline has every
    # launch of the looped run and more, so it cannot be faster.
    lp = o["looping"]
    assert (lp is None) == (batch == 1), lp
    if lp:
        assert lp["looped_cycles"] == cycles and lp["speedup_vs_resident"] > 1 and \
            lp["reload_cycles"] > lp["resident_cycles"], lp


def test_coe_with_decoder_experts(model, tmp_path):
    """Composition of Experts whose experts are decoders, under memory jitter: each request
    routed on the device to the expert its input was made for; a miss copies the expert
    (every layer's matrices and its output projection) DDR -> HBM by one copy record, a hit
    copies nothing; every position of every request bit-exact against the reference
    backend and each step within its float64 bound (checked in the test)."""
    o = run(model, tmp_path, "coe", seed=SEED + 130, decoder=True, experts=3, slots=2, requests=3,
            order="0,1,0", d=20, hidden=24, layers=1, tokens=2)
    reqs = o["requests"]
    assert all(q["expert"] == q["meant"] == q["float64_choice"] for q in reqs), reqs
    assert [q["hit"] for q in reqs] == [False, False, True], reqs
    words, p = o["expert_words"], SMALL
    assert all(len(q["tokens"]) == 2 for q in reqs), reqs
    for q in reqs:
        assert (q["switch_cycles"] == 0 if q["hit"] else
                q["switch_cycles"] >= 4 * words / p.ddr_bytes_per_cycle + p.ddr_latency), q


@pytest.mark.parametrize("k,m,kk,hidden,n,bias", [
    (0, 40, 33, 20, 12, True),
    (1, 61, 16, 40, 9, False),
    (2, 12, 10, 6, 5, True)])      # H rows of 6 words, read op by op as whole vectors
def test_mlp_graph_fused_and_op_by_op(model, tmp_path, k, m, kk, hidden, n, bias):
    """The 2-layer MLP graph compiles to one kernel and to two; both give the reference
    backend's bits (checked in the test), the fused one in fewer cycles."""
    o = run(model, tmp_path, "mlp", seed=SEED + 80 + k, m=m, k=kk, hidden=hidden, n=n,
            bias=bias)
    assert o["fused"]["launched"] == 1 and o["unfused"]["launched"] == 2
    assert o["fused"]["cycles"] < o["unfused"]["cycles"], o


def test_graph_compiles_to_a_launch_list(model, tmp_path):
    run(model, tmp_path, "graph", seed=SEED + 60, m=30, n=12, k=20)


def test_graph_with_attention_and_softmax_ops(model, tmp_path):
    run(model, tmp_path, "graph", seed=SEED + 61, m=36, n=0, k=32, attention=1)


def test_agcu_fault_stops_the_sequencer(model, tmp_path):
    run(model, tmp_path, "fault", seed=SEED + 20, n=50)


def test_refused_copy_record_stops_the_sequencer(model, tmp_path):
    run(model, tmp_path, "dma_refused", seed=SEED + 35, n=40)


def test_kernel_timeout_stops_the_sequencer(model, tmp_path):
    run(model, tmp_path, "timeout", seed=SEED + 30, n=24)


@pytest.mark.parametrize("k", [0, 1])
def test_faults_are_named_contained_and_cleared(model, tmp_path, k):
    """Records and programs outside memory, a flipped program bit, a program load over the
    watchdog, a looped kernel stepping out of its buffer: each its named error, nothing
    written outside, and the next launch bit-exact."""
    run(model, tmp_path, "faults", seed=SEED + 70 + k, n=40 + 17 * k)


@pytest.mark.parametrize("k", [0])      # another seed on another machine: test_rtl_grid.py
def test_kernels_under_random_latency_phase_and_stalls(model, tmp_path, k):
    """GEMM, softmax, attention, MLP, a looped kernel and a decoder position at shapes from
    the seed, twice each with new inputs, start phase and random token buckets on their
    injection ports: bit-exact, nothing dropped, every link balanced, the same packet
    counts each run."""
    from tb.lib.stress import CASES
    out = run(model, tmp_path, "stress", seed=SEED + 100 + k, runs=2)
    assert out["runs"] == 2 * len(CASES) and out["throttled_ports"] > 0, out
    assert out["lost"] == out["duplicated"] == out["dropped"] == out["mismatched_words"] == 0
    assert out["words_checked"] > 0 and out["packets"] > 0, out
