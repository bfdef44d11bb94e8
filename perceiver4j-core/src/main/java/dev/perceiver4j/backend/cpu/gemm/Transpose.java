package dev.perceiver4j.backend.cpu.gemm;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Square blocks of floats transposed in registers, for packing an operand stored the other way
 * round (the transposed formulation's A^T, a weight's B in the usual formulation). A scalar copy
 * writes one float per destination cache line at a time; here a block of n rows is loaded as n
 * vectors, transposed by log2(n) rounds of two-vector lane selections ({@link
 * FloatVector#selectFrom(jdk.incubator.vector.Vector, jdk.incubator.vector.Vector)}, one AVX-512
 * {@code vpermt2ps} each), and stored as n vectors. Round g pairs rows i and i + g (i without bit
 * g): row i takes the even chunks of g lanes of both rows, row i + g the odd ones; after the
 * rounds g = n/2, ..., 1, row p holds column p. {@link #scalar} is the reference.
 */
final class Transpose {
    private static final VectorSpecies<Float> S16 = FloatVector.SPECIES_512;
    private static final VectorSpecies<Float> S8 = FloatVector.SPECIES_256;
    private static final FloatVector LO16_8 = chunks(S16, 8, false), HI16_8 = chunks(S16, 8, true);
    private static final FloatVector LO16_4 = chunks(S16, 4, false), HI16_4 = chunks(S16, 4, true);
    private static final FloatVector LO16_2 = chunks(S16, 2, false), HI16_2 = chunks(S16, 2, true);
    private static final FloatVector LO16_1 = chunks(S16, 1, false), HI16_1 = chunks(S16, 1, true);
    static final FloatVector LO8_4 = chunks(S8, 4, false), HI8_4 = chunks(S8, 4, true);
    static final FloatVector LO8_2 = chunks(S8, 2, false), HI8_2 = chunks(S8, 2, true);
    static final FloatVector LO8_1 = chunks(S8, 1, false), HI8_1 = chunks(S8, 1, true);
    /** The rounds of a 4 x 4 transpose (128-bit vectors), for the 4x2 tile's merges. */
    static final FloatVector LO4_2 = chunks(FloatVector.SPECIES_128, 2, false), HI4_2 = chunks(FloatVector.SPECIES_128, 2, true);
    static final FloatVector LO4_1 = chunks(FloatVector.SPECIES_128, 1, false), HI4_1 = chunks(FloatVector.SPECIES_128, 1, true);

    private Transpose() {}

    /**
     * Lane indexes into the pair (a, b) for one round of chunks of g lanes: lane l of chunk pair q
     * takes chunk 2q of a (hi: 2q + 1) for its first g lanes and the same chunk of b (indexes n..
     * 2n - 1 select from b) for the rest.
     */
    private static FloatVector chunks(VectorSpecies<Float> s, int g, boolean hi) {
        int n = s.length();
        float[] idx = new float[n];
        for (int l = 0; l < n; l++) {
            int q = l / (2 * g) * (2 * g), w = l % (2 * g), from = q + (hi ? g : 0) + (w % g);
            idx[l] = w < g ? from : n + from;
        }
        return FloatVector.fromArray(s, idx, 0);
    }

    /** dst[p][j] = src[j][p] for p, j &lt; 16: row j of src at srcOff + j * lds, row p of dst at dstOff + p * ldd. */
    static void block16(float[] src, int srcOff, int lds, float[] dst, int dstOff, int ldd) {
        FloatVector r0 = FloatVector.fromArray(S16, src, srcOff);
        FloatVector r1 = FloatVector.fromArray(S16, src, srcOff + 1 * lds);
        FloatVector r2 = FloatVector.fromArray(S16, src, srcOff + 2 * lds);
        FloatVector r3 = FloatVector.fromArray(S16, src, srcOff + 3 * lds);
        FloatVector r4 = FloatVector.fromArray(S16, src, srcOff + 4 * lds);
        FloatVector r5 = FloatVector.fromArray(S16, src, srcOff + 5 * lds);
        FloatVector r6 = FloatVector.fromArray(S16, src, srcOff + 6 * lds);
        FloatVector r7 = FloatVector.fromArray(S16, src, srcOff + 7 * lds);
        FloatVector r8 = FloatVector.fromArray(S16, src, srcOff + 8 * lds);
        FloatVector r9 = FloatVector.fromArray(S16, src, srcOff + 9 * lds);
        FloatVector r10 = FloatVector.fromArray(S16, src, srcOff + 10 * lds);
        FloatVector r11 = FloatVector.fromArray(S16, src, srcOff + 11 * lds);
        FloatVector r12 = FloatVector.fromArray(S16, src, srcOff + 12 * lds);
        FloatVector r13 = FloatVector.fromArray(S16, src, srcOff + 13 * lds);
        FloatVector r14 = FloatVector.fromArray(S16, src, srcOff + 14 * lds);
        FloatVector r15 = FloatVector.fromArray(S16, src, srcOff + 15 * lds);
        FloatVector t;
        // chunks of 8
        t = LO16_8.selectFrom(r0, r8); r8 = HI16_8.selectFrom(r0, r8); r0 = t;
        t = LO16_8.selectFrom(r1, r9); r9 = HI16_8.selectFrom(r1, r9); r1 = t;
        t = LO16_8.selectFrom(r2, r10); r10 = HI16_8.selectFrom(r2, r10); r2 = t;
        t = LO16_8.selectFrom(r3, r11); r11 = HI16_8.selectFrom(r3, r11); r3 = t;
        t = LO16_8.selectFrom(r4, r12); r12 = HI16_8.selectFrom(r4, r12); r4 = t;
        t = LO16_8.selectFrom(r5, r13); r13 = HI16_8.selectFrom(r5, r13); r5 = t;
        t = LO16_8.selectFrom(r6, r14); r14 = HI16_8.selectFrom(r6, r14); r6 = t;
        t = LO16_8.selectFrom(r7, r15); r15 = HI16_8.selectFrom(r7, r15); r7 = t;
        // chunks of 4
        t = LO16_4.selectFrom(r0, r4); r4 = HI16_4.selectFrom(r0, r4); r0 = t;
        t = LO16_4.selectFrom(r1, r5); r5 = HI16_4.selectFrom(r1, r5); r1 = t;
        t = LO16_4.selectFrom(r2, r6); r6 = HI16_4.selectFrom(r2, r6); r2 = t;
        t = LO16_4.selectFrom(r3, r7); r7 = HI16_4.selectFrom(r3, r7); r3 = t;
        t = LO16_4.selectFrom(r8, r12); r12 = HI16_4.selectFrom(r8, r12); r8 = t;
        t = LO16_4.selectFrom(r9, r13); r13 = HI16_4.selectFrom(r9, r13); r9 = t;
        t = LO16_4.selectFrom(r10, r14); r14 = HI16_4.selectFrom(r10, r14); r10 = t;
        t = LO16_4.selectFrom(r11, r15); r15 = HI16_4.selectFrom(r11, r15); r11 = t;
        // chunks of 2
        t = LO16_2.selectFrom(r0, r2); r2 = HI16_2.selectFrom(r0, r2); r0 = t;
        t = LO16_2.selectFrom(r1, r3); r3 = HI16_2.selectFrom(r1, r3); r1 = t;
        t = LO16_2.selectFrom(r4, r6); r6 = HI16_2.selectFrom(r4, r6); r4 = t;
        t = LO16_2.selectFrom(r5, r7); r7 = HI16_2.selectFrom(r5, r7); r5 = t;
        t = LO16_2.selectFrom(r8, r10); r10 = HI16_2.selectFrom(r8, r10); r8 = t;
        t = LO16_2.selectFrom(r9, r11); r11 = HI16_2.selectFrom(r9, r11); r9 = t;
        t = LO16_2.selectFrom(r12, r14); r14 = HI16_2.selectFrom(r12, r14); r12 = t;
        t = LO16_2.selectFrom(r13, r15); r15 = HI16_2.selectFrom(r13, r15); r13 = t;
        // chunks of 1
        t = LO16_1.selectFrom(r0, r1); r1 = HI16_1.selectFrom(r0, r1); r0 = t;
        t = LO16_1.selectFrom(r2, r3); r3 = HI16_1.selectFrom(r2, r3); r2 = t;
        t = LO16_1.selectFrom(r4, r5); r5 = HI16_1.selectFrom(r4, r5); r4 = t;
        t = LO16_1.selectFrom(r6, r7); r7 = HI16_1.selectFrom(r6, r7); r6 = t;
        t = LO16_1.selectFrom(r8, r9); r9 = HI16_1.selectFrom(r8, r9); r8 = t;
        t = LO16_1.selectFrom(r10, r11); r11 = HI16_1.selectFrom(r10, r11); r10 = t;
        t = LO16_1.selectFrom(r12, r13); r13 = HI16_1.selectFrom(r12, r13); r12 = t;
        t = LO16_1.selectFrom(r14, r15); r15 = HI16_1.selectFrom(r14, r15); r14 = t;
        r0.intoArray(dst, dstOff);
        r1.intoArray(dst, dstOff + 1 * ldd);
        r2.intoArray(dst, dstOff + 2 * ldd);
        r3.intoArray(dst, dstOff + 3 * ldd);
        r4.intoArray(dst, dstOff + 4 * ldd);
        r5.intoArray(dst, dstOff + 5 * ldd);
        r6.intoArray(dst, dstOff + 6 * ldd);
        r7.intoArray(dst, dstOff + 7 * ldd);
        r8.intoArray(dst, dstOff + 8 * ldd);
        r9.intoArray(dst, dstOff + 9 * ldd);
        r10.intoArray(dst, dstOff + 10 * ldd);
        r11.intoArray(dst, dstOff + 11 * ldd);
        r12.intoArray(dst, dstOff + 12 * ldd);
        r13.intoArray(dst, dstOff + 13 * ldd);
        r14.intoArray(dst, dstOff + 14 * ldd);
        r15.intoArray(dst, dstOff + 15 * ldd);
    }

    /** dst[p][j] = src[j][p] for p, j &lt; 8: row j of src at srcOff + j * lds, row p of dst at dstOff + p * ldd. */
    static void block8(float[] src, int srcOff, int lds, float[] dst, int dstOff, int ldd) {
        FloatVector r0 = FloatVector.fromArray(S8, src, srcOff);
        FloatVector r1 = FloatVector.fromArray(S8, src, srcOff + 1 * lds);
        FloatVector r2 = FloatVector.fromArray(S8, src, srcOff + 2 * lds);
        FloatVector r3 = FloatVector.fromArray(S8, src, srcOff + 3 * lds);
        FloatVector r4 = FloatVector.fromArray(S8, src, srcOff + 4 * lds);
        FloatVector r5 = FloatVector.fromArray(S8, src, srcOff + 5 * lds);
        FloatVector r6 = FloatVector.fromArray(S8, src, srcOff + 6 * lds);
        FloatVector r7 = FloatVector.fromArray(S8, src, srcOff + 7 * lds);
        FloatVector t;
        // chunks of 4
        t = LO8_4.selectFrom(r0, r4); r4 = HI8_4.selectFrom(r0, r4); r0 = t;
        t = LO8_4.selectFrom(r1, r5); r5 = HI8_4.selectFrom(r1, r5); r1 = t;
        t = LO8_4.selectFrom(r2, r6); r6 = HI8_4.selectFrom(r2, r6); r2 = t;
        t = LO8_4.selectFrom(r3, r7); r7 = HI8_4.selectFrom(r3, r7); r3 = t;
        // chunks of 2
        t = LO8_2.selectFrom(r0, r2); r2 = HI8_2.selectFrom(r0, r2); r0 = t;
        t = LO8_2.selectFrom(r1, r3); r3 = HI8_2.selectFrom(r1, r3); r1 = t;
        t = LO8_2.selectFrom(r4, r6); r6 = HI8_2.selectFrom(r4, r6); r4 = t;
        t = LO8_2.selectFrom(r5, r7); r7 = HI8_2.selectFrom(r5, r7); r5 = t;
        // chunks of 1
        t = LO8_1.selectFrom(r0, r1); r1 = HI8_1.selectFrom(r0, r1); r0 = t;
        t = LO8_1.selectFrom(r2, r3); r3 = HI8_1.selectFrom(r2, r3); r2 = t;
        t = LO8_1.selectFrom(r4, r5); r5 = HI8_1.selectFrom(r4, r5); r4 = t;
        t = LO8_1.selectFrom(r6, r7); r7 = HI8_1.selectFrom(r6, r7); r6 = t;
        r0.intoArray(dst, dstOff);
        r1.intoArray(dst, dstOff + 1 * ldd);
        r2.intoArray(dst, dstOff + 2 * ldd);
        r3.intoArray(dst, dstOff + 3 * ldd);
        r4.intoArray(dst, dstOff + 4 * ldd);
        r5.intoArray(dst, dstOff + 5 * ldd);
        r6.intoArray(dst, dstOff + 6 * ldd);
        r7.intoArray(dst, dstOff + 7 * ldd);
    }

    /** The reference: dst[p][j] = src[j][p] for p, j &lt; n, one float at a time. */
    static void scalar(int n, float[] src, int srcOff, int lds, float[] dst, int dstOff, int ldd) {
        for (int p = 0; p < n; p++) {
            for (int j = 0; j < n; j++) dst[dstOff + p * ldd + j] = src[srcOff + j * lds + p];
        }
    }
}
