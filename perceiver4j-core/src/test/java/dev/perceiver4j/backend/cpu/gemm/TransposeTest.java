package dev.perceiver4j.backend.cpu.gemm;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

class TransposeTest {

    /** Each square against the scalar reference, at offsets and strides that are not multiples of anything; nothing else written. */
    @Test
    void squaresMatchTheScalarTranspose() {
        SplittableRandom rnd = new SplittableRandom(3);
        for (int n : new int[] {8, 16}) {
            for (int[] c : new int[][] {{0, n, 0, n}, {3, 37, 5, 64}, {11, 1283, 1, 19}}) {
                int srcOff = c[0], lds = c[1], dstOff = c[2], ldd = c[3];
                float[] src = SgemmChecks.random(srcOff + (n - 1) * lds + n + 3, rnd);
                float[] viaRegisters = SgemmChecks.random(dstOff + (n - 1) * ldd + n + 3, rnd);
                float[] viaScalar = viaRegisters.clone();
                if (n == 16) Transpose.block16(src, srcOff, lds, viaRegisters, dstOff, ldd);
                else Transpose.block8(src, srcOff, lds, viaRegisters, dstOff, ldd);
                Transpose.scalar(n, src, srcOff, lds, viaScalar, dstOff, ldd);
                assertThat(viaRegisters).as("n %d, offsets %d/%d, strides %d/%d", n, srcOff, dstOff, lds, ldd).containsExactly(viaScalar);
                assertThat(viaScalar[dstOff + 3 * ldd + 5]).isEqualTo(src[srcOff + 5 * lds + 3]); // the reference is a transpose
            }
        }
    }
}
