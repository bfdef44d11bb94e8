package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The precision switch's parsing (no GPU needed). */
class MatmulPrecisionTest {

    @Test
    void parsesTheThreeModesInAnyCase() {
        assertThat(MatmulPrecision.parse("fp32")).isEqualTo(MatmulPrecision.FP32);
        assertThat(MatmulPrecision.parse(" TF32 ")).isEqualTo(MatmulPrecision.TF32);
        assertThat(MatmulPrecision.parse("Bf16")).isEqualTo(MatmulPrecision.BF16);
        assertThat(MatmulPrecision.FP32.reduced()).isFalse();
        assertThat(MatmulPrecision.TF32.reduced()).isTrue();
        assertThat(MatmulPrecision.BF16.reduced()).isTrue();
    }

    @Test
    void rejectsAnUnknownModeNamingTheChoices() {
        assertThatThrownBy(() -> MatmulPrecision.parse("fp16"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'fp16'").hasMessageContaining("fp32, tf32 or bf16").hasMessageContaining(MatmulPrecision.PROPERTY);
    }

    @Test
    void precisionPropertyWinsOverTheOlderTf32Flag() {
        String oldP = System.getProperty(MatmulPrecision.PROPERTY), oldT = System.getProperty("perceiver4j.cuda.tf32");
        try {
            System.clearProperty(MatmulPrecision.PROPERTY);
            System.clearProperty("perceiver4j.cuda.tf32");
            assertThat(MatmulPrecision.fromSystemProperties()).isEqualTo(MatmulPrecision.FP32);
            System.setProperty("perceiver4j.cuda.tf32", "true");
            assertThat(MatmulPrecision.fromSystemProperties()).isEqualTo(MatmulPrecision.TF32);
            System.setProperty(MatmulPrecision.PROPERTY, "bf16");
            assertThat(MatmulPrecision.fromSystemProperties()).isEqualTo(MatmulPrecision.BF16);
        } finally {
            restore(MatmulPrecision.PROPERTY, oldP);
            restore("perceiver4j.cuda.tf32", oldT);
        }
    }

    private static void restore(String key, String value) {
        if (value == null) System.clearProperty(key);
        else System.setProperty(key, value);
    }
}
