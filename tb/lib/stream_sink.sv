// Testbench stream sink: accepts words with `ready` high in a cycle with probability
// rate/256 (seeded xorshift32), stores them in order and counts every beat (beyond
// DEPTH they are counted, not stored). A rising `dump` writes the stored words to
// <NAME>.hex ($writememh) in the simulator's working directory. `done` is high once
// `expect` words have arrived. With TIMED, the arrival cycle of each word (`now`) goes
// to <NAME>.at.hex as well.
module openrdu_stream_sink #(
    parameter int W = 32,
    parameter int DEPTH = 1024,
    parameter string NAME = "sink",
    parameter bit TIMED = 0
) (
    input  logic         clk,
    input  logic         rst,
    input  logic         dump,
    input  logic [31:0]  now,
    input  logic [31:0]  expect_count,
    input  logic [31:0]  seed,
    input  logic [8:0]   rate,
    input  logic         valid,
    output logic         ready,
    input  logic [W-1:0] payload,
    output logic [31:0]  received,
    output logic         done
);
    logic [W-1:0] mem [DEPTH];
    logic [31:0] rnd;
    assign done = received >= expect_count;

    always @(posedge dump) begin
        if (received > 0)
            $writememh({NAME, ".hex"}, mem, 0, (received > DEPTH ? DEPTH : received) - 1);
    end

    generate
        if (TIMED) begin : timed
            logic [31:0] at_mem [DEPTH];
            always @(posedge dump) begin
                if (received > 0)
                    $writememh({NAME, ".at.hex"}, at_mem, 0, (received > DEPTH ? DEPTH : received) - 1);
            end
            always_ff @(posedge clk)
                if (!rst && valid && ready && received < DEPTH)
                    at_mem[received[$clog2(DEPTH)-1:0]] <= now;
        end
    endgenerate

    always_ff @(posedge clk) begin
        if (rst) begin
            ready <= 1'b0;
            received <= 32'd0;
            rnd <= seed | 32'd1;
        end else begin
            rnd <= openrdu_tb_pkg::xorshift32(rnd);
            ready <= {1'b0, rnd[7:0]} < rate;
            if (valid && ready) begin
                if (received < DEPTH)
                    mem[received[$clog2(DEPTH)-1:0]] <= payload;
                received <= received + 32'd1;
            end
        end
    end
endmodule
