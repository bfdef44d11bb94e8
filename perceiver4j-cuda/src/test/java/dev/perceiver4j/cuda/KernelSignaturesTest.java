package dev.perceiver4j.cuda;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The launch-argument check, against the project's CUDA source (no GPU needed). */
class KernelSignaturesTest {
    private static final KernelSignatures REAL = KernelSignatures.parse(Kernels.source());

    private static boolean[] wide(int... widths) {
        boolean[] w = new boolean[widths.length];
        for (int i = 0; i < widths.length; i++) w[i] = widths[i] == 8;
        return w;
    }

    @Test
    void readsThePlainKernelsOfTheSource() {
        // p4j_bias_act(const float* c, const float* bias, int cols, float* pre, float* out, int n, int act, unsigned short* out16)
        assertThat(REAL.widths("p4j_bias_act")).containsExactly(8, 8, 4, 8, 8, 4, 4, 8);
        // p4j_scale(const float* x, float alpha, float* out, int n)
        assertThat(REAL.widths("p4j_scale")).containsExactly(8, 4, 8, 4);
        assertThat(REAL.exactCount()).isGreaterThan(30);
        assertThat(REAL.widths("NAME")).as("a macro parameter is no kernel name").isNull();
    }

    @Test
    void readsMacroBuiltAttentionKernelsAsNamePatterns() {
        // q, k, v, pad, out, lse (pointers), H, nq, nk, dqk, dv, scale, causal, pdrop, keepScale, seed, stream
        int[] forward = {8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8};
        // the bf16 forward's, then out16 and keepBits (pointers) and the row widths of q, k, v
        int[] forward16 = {8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8, 8, 8, 4, 4, 4};
        assertThat(REAL.widths("p4j_attention_forward_bf16_32_160_w4")).containsExactly(forward16);
        assertThat(REAL.widths("p4j_attention_forward_tc_64_64")).containsExactly(forward);
        assertThat(REAL.widths("p4j_attention_backward_dkdv_bf16_64_64_w4")).hasSize(25);   // + keepBits, store, three row widths
        // the variants with dropout: the same arguments, the name built with a suffix parameter
        assertThat(REAL.widths("p4j_attention_forward_bf16_64_64_w4_drop")).containsExactly(forward16);
        assertThat(REAL.widths("p4j_attention_backward_dq_bf16_32_160_w4_drop")).hasSize(24);
        // the keep bits they read: bits, words, nk, wordsPerRow, p, seed, stream
        assertThat(REAL.widths("p4j_attention_keep_bits")).containsExactly(8, 4, 4, 4, 4, 8, 8);
        assertThat(REAL.widths("p4j_no_such_kernel")).isNull();
    }

    @Test
    void everyKernelNamedInTheBackendSourcesIsKnown() throws java.io.IOException {
        // kernel names written as string literals in the host code (a prefix such as "p4j_attention_forward_tc_" is completed at run time)
        java.util.regex.Pattern literal = java.util.regex.Pattern.compile("\"(p4j_[a-z0-9_]*[a-z0-9])\"");
        java.util.Set<String> names = new java.util.TreeSet<>();
        try (var files = java.nio.file.Files.list(java.nio.file.Path.of("src/main/java/dev/perceiver4j/cuda"))) {
            for (java.nio.file.Path f : files.filter(x -> x.toString().endsWith(".java")).toList()) {
                java.util.regex.Matcher m = literal.matcher(java.nio.file.Files.readString(f));
                while (m.find()) names.add(m.group(1));
            }
        }
        assertThat(names).contains("p4j_bias_act", "p4j_column_partial4", "p4j_layernorm_warp", "p4j_seed_shift");
        // names of the source's __device__ variables (looked up with cuModuleGetGlobal, not launched)
        String source = Kernels.source();
        names.removeIf(name -> java.util.regex.Pattern.compile("__device__\\s+[\\w ]+\\b" + name + "\\s*[=;]").matcher(source).find());
        assertThat(names).doesNotContain("p4j_seed_shift").contains("p4j_bias_act");
        for (String name : names) {
            assertThat(REAL.widths(name)).as(name).isNotNull();
        }
    }

    @Test
    void aLaunchMissingArgumentsIsRefusedNamingTheKernel() {
        REAL.check("p4j_bias_act", 8, wide(8, 8, 4, 8, 8, 4, 4, 8));
        // the slip that once dropped a launch's last three arguments
        assertThatThrownBy(() -> REAL.check("p4j_bias_act", 5, wide(8, 8, 4, 8, 8)))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("kernel p4j_bias_act takes 8 arguments (8, 8, 4, 8, 8, 4, 4, 8)")
                .hasMessageContaining("passed 5 (8, 8, 4, 8, 8)");
        assertThatThrownBy(() -> REAL.check("p4j_scale", 4, wide(8, 8, 8, 4)))
                .as("a pointer where a float goes").hasMessageContaining("p4j_scale");
        REAL.check("p4j_unknown", 1, wide(8));   // not declared in a readable way: not checked
    }

    @Test
    void parsesCommentsContinuationsAndLaunchBounds() {
        String src = """
                // extern "C" __global__ void p4j_commented(int a) {}
                /* extern "C" __global__ void p4j_block_commented(int a) {} */
                extern "C" __global__ void __launch_bounds__(4 * 32) p4j_bounded(const float* x, long long n, double d, unsigned int u) {}
                #define MAKE(D, W) \\
                    extern "C" __global__ void p4j_made_##D##_w##W( \\
                        float* x, int n) {}
                #define MAKE2(D, SUFFIX) \\
                    extern "C" __global__ void p4j_suffixed_##D##SUFFIX(int n) {}
                extern "C" __global__ void p4j_empty() {}
                extern "C" __global__ void __launch_bounds__(W * 32, min_blocks(D, 4)) p4j_nested_bounds(int n, float* x) {}
                """;
        KernelSignatures s = KernelSignatures.parse(src);
        assertThat(s.widths("p4j_commented")).isNull();
        assertThat(s.widths("p4j_block_commented")).isNull();
        assertThat(s.widths("p4j_bounded")).containsExactly(8, 8, 8, 4);
        assertThat(s.widths("p4j_made_32_w4")).containsExactly(8, 4);
        assertThat(s.widths("p4j_suffixed_32")).as("an empty macro parameter").containsExactly(4);
        assertThat(s.widths("p4j_suffixed_32_drop")).containsExactly(4);
        assertThat(s.widths("p4j_empty")).isEmpty();
        assertThat(s.widths("p4j_nested_bounds")).as("launch bounds that call a function").containsExactly(4, 8);
    }
}
