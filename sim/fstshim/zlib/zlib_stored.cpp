// zlib stream of stored deflate blocks (RFC 1950/1951), see zlib.h beside it.
#include "zlib.h"

namespace {
const uLong kBlock = 65535;  // the largest stored block

uLong adler32_of(const Bytef* p, uLong n) {
    uLong a = 1, b = 0;
    for (uLong i = 0; i < n; ++i) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return (b << 16) | a;
}
}  // namespace

extern "C" uLong compressBound(uLong source_len) {
    return source_len + 5 * (source_len / kBlock + 1) + 6;
}

extern "C" int compress2(Bytef* dest, uLongf* dest_len, const Bytef* source, uLong source_len,
                         int) {
    if (*dest_len < compressBound(source_len)) return Z_BUF_ERROR;
    uLong n = 0;
    dest[n++] = 0x78;  // deflate, 32 KiB window
    dest[n++] = 0x01;  // no preset dictionary, check bits
    uLong done = 0;
    do {
        const uLong len = source_len - done < kBlock ? source_len - done : kBlock;
        dest[n++] = done + len == source_len ? 1 : 0;  // BFINAL, BTYPE = stored
        dest[n++] = len & 0xFF;
        dest[n++] = len >> 8;
        dest[n++] = ~len & 0xFF;
        dest[n++] = (~len >> 8) & 0xFF;
        for (uLong i = 0; i < len; ++i) dest[n++] = source[done + i];
        done += len;
    } while (done < source_len);
    const uLong check = adler32_of(source, source_len);
    for (int shift = 24; shift >= 0; shift -= 8) dest[n++] = (check >> shift) & 0xFF;
    *dest_len = n;
    return Z_OK;
}
