"""Pattern compute unit (ARCHITECTURE.md section 4): header counters, SIMD/systolic body, tail."""
