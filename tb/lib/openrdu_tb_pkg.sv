// Shared by the testbench stream drivers.
package openrdu_tb_pkg;
    // xorshift32 (Marsaglia 2003): the drivers' per-cycle random source; never 0 when
    // seeded with a non-zero value.
    function automatic logic [31:0] xorshift32(input logic [31:0] x);
        logic [31:0] y;
        y = x ^ (x << 13);
        y = y ^ (y >> 17);
        return y ^ (y << 5);
    endfunction
endpackage
