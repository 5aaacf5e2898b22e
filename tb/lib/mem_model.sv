// Testbench backing store of one memory channel (a DRAM port of the design: addr, re,
// we, wdata, wmask, rdata). A read returns the beat at `addr` one cycle later; a write
// stores the words whose mask bit is set. Backdoor, no per-cycle Python: a rising `load`
// reads <NAME>.mem.hex ($readmemh, sparse `@address` records), a rising `dump` writes
// beats lo .. hi to <NAME>.dump.hex ($writememh).
module openrdu_mem_model #(
    parameter int AW = 10,
    parameter int WORDS = 1,
    parameter string NAME = "mem"
) (
    input  logic                 clk,
    input  logic [AW-1:0]        addr,
    input  logic                 re,
    input  logic                 we,
    input  logic [32*WORDS-1:0]  wdata,
    input  logic [WORDS-1:0]     wmask,
    output logic [32*WORDS-1:0]  rdata,
    input  logic                 load,
    input  logic                 dump,
    input  logic [31:0]          lo,
    input  logic [31:0]          hi
);
    logic [32*WORDS-1:0] mem [1 << AW];

    always @(posedge load) $readmemh({NAME, ".mem.hex"}, mem);
    always @(posedge dump) $writememh({NAME, ".dump.hex"}, mem, lo, hi);

    always_ff @(posedge clk) begin
        if (re) rdata <= mem[addr];
        if (we)
            for (int w = 0; w < WORDS; w++)
                if (wmask[w]) mem[addr][32*w +: 32] <= wdata[32*w +: 32];
    end
endmodule
