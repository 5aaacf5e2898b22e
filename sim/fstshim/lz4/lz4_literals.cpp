// LZ4 block of literals only: one sequence, a token with the literal length and no match
// (the format's last sequence), see lz4.h beside it.
#include "lz4.h"

extern "C" int LZ4_compressBound(int input_size) {
    return input_size < 0 ? 0 : input_size + input_size / 255 + 16;
}

extern "C" int LZ4_compress_default(const char* src, char* dst, int src_size, int dst_capacity) {
    if (src_size < 0 || dst_capacity < LZ4_compressBound(src_size)) return 0;
    unsigned char* out = reinterpret_cast<unsigned char*>(dst);
    int n = 0;
    if (src_size < 15) {
        out[n++] = static_cast<unsigned char>(src_size << 4);
    } else {
        out[n++] = 0xF0;
        int rest = src_size - 15;
        for (; rest >= 255; rest -= 255) out[n++] = 255;
        out[n++] = static_cast<unsigned char>(rest);
    }
    for (int i = 0; i < src_size; ++i) out[n++] = static_cast<unsigned char>(src[i]);
    return n;
}
