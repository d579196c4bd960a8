package org.pserver.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Locale;
import org.pserver.ElementType;

/**
 * A quick, human-facing check of a kernels implementation: the known-answer and agreement
 * self-test, plus a rough Adam float32 throughput figure (a smoke number, not a benchmark; the
 * benchmarks live in {@code bench/}).
 */
public final class SelfCheck {
  private SelfCheck() {}

  /** The outcome of {@link #run}. */
  public record Result(boolean ok, String report) {}

  /** Runs the self-test and a short timing on {@code k}. Never throws for a failed check. */
  public static Result run(UpdateKernels k) {
    StringBuilder out = new StringBuilder();
    try {
      KnownAnswers.check(k);
      out.append("self-test: ok (spec known answers")
          .append((k instanceof ParallelKernels p ? p.inner() : k) instanceof JavaKernels
              ? "" : "; bit-identical to the Java kernels")
          .append(')');
    } catch (RuntimeException e) {
      return new Result(false, "self-test: FAILED: " + e.getMessage());
    }
    int n = 1 << 20;
    ByteBuffer p = direct(n), g = direct(n), m = direct(n), v = direct(n);
    for (int i = 0; i < n; i++) {
      g.putFloat(4 * i, (i % 17) * 0.01f - 0.05f);
    }
    long best = Long.MAX_VALUE;
    for (int rep = 0; rep < 30; rep++) {
      long t0 = System.nanoTime();
      k.adam(ElementType.FLOAT32, p, g, m, v, 0, n, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 0);
      best = Math.min(best, System.nanoTime() - t0);
    }
    out.append(
        String.format(
            Locale.ROOT,
            "%nadam float32, %d elements: %.2f ms, %.1f GB/s (28 bytes/element; best of 30)",
            n,
            best / 1e6,
            28.0 * n / best));
    return new Result(true, out.toString());
  }

  private static ByteBuffer direct(int floats) {
    return OffHeap.allocate(4 * floats);
  }
}
