package dev.perceiver4j.cuda;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The argument widths of every {@code extern "C" __global__} kernel in the project's CUDA source,
 * read from the source text, so that a launch passing the wrong number or kind of arguments fails
 * on the host with a message naming the kernel instead of running on garbage. cuLaunchKernel
 * cannot tell: it reads as many argument slots as the kernel has, whatever the caller filled.
 *
 * <p>A parameter with a {@code *}, or of type {@code long long} / {@code double}, is 8 bytes
 * ({@link Kernels.Launch#ptr}, {@link Kernels.Launch#i64}); any other ({@code int}, {@code float},
 * {@code unsigned}) is 4 bytes ({@link Kernels.Launch#i32}, {@link Kernels.Launch#f32}). Kernels
 * declared inside a macro with a name built by {@code ##} (the attention specialisations) are kept
 * as name patterns, every upper-case macro parameter matching any word or none; a kernel whose whole name
 * is a macro parameter (instantiations such as {@code P4J_BINARY4(p4j_add4, +)}) is not known and
 * not checked.
 */
final class KernelSignatures {
    private static final Pattern KERNEL = Pattern.compile(
            "extern\\s+\"C\"\\s+__global__\\s+void\\s+(?:__launch_bounds__\\s*\\((?:[^()]|\\([^()]*\\))*\\)\\s*)?"   // bounds may call a function
                    + "(\\w+(?:\\s*##\\s*\\w+)*)\\s*\\(([^)]*)\\)");
    private static final Pattern MACRO_PARAMETER = Pattern.compile("[A-Z][A-Z0-9_]*");

    /** Widths in bytes (4 or 8) per argument, by exact kernel name. */
    private final Map<String, int[]> exact = new HashMap<>();
    /** Name patterns of macro-built kernels, with their widths. */
    private final List<Map.Entry<Pattern, int[]>> templates = new ArrayList<>();
    /** {@link #widths} per name asked for, so a launch matches the patterns once per kernel name, not once per launch. */
    private final Map<String, int[]> resolved = new ConcurrentHashMap<>();
    /** What {@link #resolved} holds for a name the source does not declare readably. */
    private static final int[] UNKNOWN = new int[0];

    private KernelSignatures() {}

    /** The kernels declared in {@code source} (CUDA C). */
    static KernelSignatures parse(String source) {
        String text = source.replaceAll("(?s)/\\*.*?\\*/", " ").replaceAll("//[^\\n]*", " ").replace("\\\n", " ");
        KernelSignatures s = new KernelSignatures();
        Matcher m = KERNEL.matcher(text);
        while (m.find()) {
            int[] widths = parameterWidths(m.group(2));
            String[] parts = m.group(1).split("\\s*##\\s*");
            if (parts.length == 1) {
                if (!MACRO_PARAMETER.matcher(parts[0]).matches()) s.exact.put(parts[0], widths);
                continue;
            }
            StringBuilder regex = new StringBuilder();
            for (String part : parts) regex.append(MACRO_PARAMETER.matcher(part).matches() ? "\\w*" : Pattern.quote(part));   // a parameter may be empty
            s.templates.add(Map.entry(Pattern.compile(regex.toString()), widths));
        }
        return s;
    }

    private static int[] parameterWidths(String parameters) {
        String list = parameters.trim();
        if (list.isEmpty() || list.equals("void")) return new int[0];
        String[] params = list.split(",");
        int[] w = new int[params.length];
        for (int i = 0; i < params.length; i++) {
            String p = params[i];
            w[i] = p.contains("*") || p.contains("long long") || p.contains("double") ? 8 : 4;
        }
        return w;
    }

    /** The argument widths of kernel {@code name}, or null when the source does not declare it by a name this class can read. */
    int[] widths(String name) {
        int[] w = resolved.computeIfAbsent(name, this::resolve);
        return w == UNKNOWN ? null : w;
    }

    private int[] resolve(String name) {
        int[] w = exact.get(name);
        if (w != null) return w;
        for (Map.Entry<Pattern, int[]> t : templates) {
            if (t.getKey().matcher(name).matches()) return t.getValue();
        }
        return UNKNOWN;
    }

    /** Number of kernels known by exact name (tests). */
    int exactCount() {
        return exact.size();
    }

    /**
     * Throws when a launch of {@code name} with {@code count} arguments, the first {@code count} of
     * {@code wide} telling which are 8 bytes, does not match the declaration. Unknown kernels pass.
     */
    void check(String name, int count, boolean[] wide) {
        int[] w = widths(name);
        if (w == null) return;
        boolean ok = w.length == count;
        for (int i = 0; ok && i < count; i++) ok = (w[i] == 8) == wide[i];
        if (!ok) {
            throw new IllegalStateException("kernel " + name + " takes " + w.length + " arguments " + describe(w)
                    + " but its launch passed " + count + " " + describe(wide, count) + " (8 = pointer or 64-bit, 4 = int or float)");
        }
    }

    private static String describe(int[] w) {
        StringBuilder b = new StringBuilder("(");
        for (int i = 0; i < w.length; i++) b.append(i == 0 ? "" : ", ").append(w[i]);
        return b.append(")").toString();
    }

    private static String describe(boolean[] wide, int count) {
        int[] w = new int[count];
        for (int i = 0; i < count; i++) w[i] = wide[i] ? 8 : 4;
        return describe(w);
    }
}
