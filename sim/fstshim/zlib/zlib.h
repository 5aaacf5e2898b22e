// Stand-in for the two zlib calls of Verilator's FST writer, used only where the zlib
// headers and library are missing (no zlib1g-dev): compress2 writes a valid zlib stream of
// stored (uncompressed) deflate blocks; the writer keeps whichever of that and the raw
// data is smaller, i.e. the raw data.
#ifndef OPENRDU_ZLIB_SHIM_H
#define OPENRDU_ZLIB_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
typedef unsigned char Bytef;
typedef unsigned long uLong;
typedef unsigned long uLongf;
#define Z_OK 0
#define Z_BUF_ERROR (-5)
uLong compressBound(uLong source_len);
int compress2(Bytef* dest, uLongf* dest_len, const Bytef* source, uLong source_len, int level);
#ifdef __cplusplus
}
#endif
#endif
