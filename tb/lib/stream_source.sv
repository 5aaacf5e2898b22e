// Testbench stream source: plays `count` words from a memory loaded by backdoor
// ($readmemh of <NAME>.hex in the simulator's working directory, on a rising `load`),
// offering `valid` in a cycle with probability rate/256 (256 = every cycle) from a
// seeded xorshift32. Valid never drops and the payload never changes until accepted.
// With TIMED, word i is not offered before cycle `when[i]` (<NAME>.when.hex, cycles
// counted by `now` from the start), and the cycle each word is accepted is recorded and
// written to <NAME>.acc.hex on a rising `dump`.
module openrdu_stream_source #(
    parameter int W = 32,
    parameter int DEPTH = 1024,
    parameter string NAME = "src",
    parameter bit TIMED = 0
) (
    input  logic         clk,
    input  logic         rst,
    input  logic         start,
    input  logic         load,
    input  logic         dump,
    input  logic [31:0]  now,
    input  logic [31:0]  count,
    input  logic [31:0]  seed,
    input  logic [8:0]   rate,
    output logic         valid,
    input  logic         ready,
    output logic [W-1:0] payload,
    output logic [31:0]  sent
);
    logic [W-1:0] mem [DEPTH];
    logic [31:0] rnd;

    always @(posedge load) $readmemh({NAME, ".hex"}, mem);

    wire fire = valid && ready;
    wire [31:0] next_sent = sent + {31'b0, fire};
    wire due;
    generate
        if (TIMED) begin : timed
            logic [31:0] when_mem [DEPTH];
            logic [31:0] acc_mem [DEPTH];
            always @(posedge load) $readmemh({NAME, ".when.hex"}, when_mem);
            always @(posedge dump) begin
                if (sent > 0)
                    $writememh({NAME, ".acc.hex"}, acc_mem, 0, (sent > DEPTH ? DEPTH : sent) - 1);
            end
            always_ff @(posedge clk)
                if (fire) acc_mem[sent[$clog2(DEPTH)-1:0]] <= now;
            assign due = when_mem[next_sent[$clog2(DEPTH)-1:0]] <= now;
        end else begin : untimed
            assign due = 1'b1;
        end
    endgenerate
    assign payload = mem[sent[$clog2(DEPTH)-1:0]];

    always_ff @(posedge clk) begin
        if (rst) begin
            valid <= 1'b0;
            sent <= 32'd0;
            rnd <= seed | 32'd1;
        end else begin
            rnd <= openrdu_tb_pkg::xorshift32(rnd);
            sent <= next_sent;
            if (!valid || ready)
                valid <= start && (next_sent < count) && ({1'b0, rnd[7:0]} < rate) && due;
        end
    end
endmodule
