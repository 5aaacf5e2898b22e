#!/usr/bin/env python3
"""GTKWave translate-filter process: 32-bit words as FP32 numbers.

GTKWave writes one value per line (hex digits as the trace shows them, X/Z as letters)
and reads one line back; a word that is not a clean 32-bit hex number is echoed. The
save files of ``sim.waves`` put a copy beside themselves and name it with ``^>1``.
"""

import struct
import sys


def fp32_text(value: str) -> str:
    """``value`` (hex) as the FP32 number it encodes, e.g. ``3F800000`` -> ``1``."""
    text = value.strip()
    try:
        word = int(text, 16)
    except ValueError:
        return text
    if not 0 <= word < 1 << 32:
        return text
    f = struct.unpack("<f", struct.pack("<I", word))[0]
    return f"{f:.7g}"


def main():
    for line in sys.stdin:
        sys.stdout.write(fp32_text(line) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
