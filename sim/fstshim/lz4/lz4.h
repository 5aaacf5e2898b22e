// Stand-in for the two LZ4 calls of Verilator's FST writer, used only where the lz4
// headers and library are missing (no liblz4-dev): LZ4_compress_default writes a valid
// LZ4 block holding the input as literals, so every FST reader decompresses it; the
// writer keeps whichever of "compressed" and raw is smaller, i.e. the raw data.
#ifndef OPENRDU_LZ4_SHIM_H
#define OPENRDU_LZ4_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int input_size);
int LZ4_compress_default(const char* src, char* dst, int src_size, int dst_capacity);
#ifdef __cplusplus
}
#endif
#endif
