package org.pserver.bench;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.pserver.ElementType;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.OffHeap;
import org.pserver.kernels.UpdateKernels;

/**
 * Update kernels, native vs Java, on the same direct buffers, against an in-place triad {@code
 * a[i] += s*b[i]} (the native float32 {@code accumulate} kernel: 12 bytes per element, no
 * read-for-ownership) measured in the same run as the bandwidth yardstick.
 *
 * <p>Each invocation is one whole-range update; the score is microseconds per call, which {@code
 * bench/kernels.sh} turns into GB/s, elements/s and ratios (bytes per element: {@link #bytes}).
 * Asking for {@code native} when it did not load fails the setup instead of measuring Java twice.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g", "-XX:MaxDirectMemorySize=3g"})
public class KernelBench {

  /** A kernel update on {@code size} elements of {@code type} through {@code impl}. */
  @State(Scope.Thread)
  public static class Update {
    @Param({"native", "java"})
    public String impl;

    @Param({"sgd", "momentum", "adam", "adagrad", "adadelta"})
    public String kernel;

    @Param({"FLOAT32", "FLOAT64", "INT32"})
    public ElementType type;

    @Param({"1024", "65536", "16777216"})
    public int size;

    UpdateKernels k;
    ByteBuffer p, g, s0, s1, s2;

    @Setup(Level.Trial)
    public void setup() {
      k = implementation(impl);
      SplittableRandom rnd = new SplittableRandom(42);
      p = filled(type, size, rnd, 1.0);
      g = filled(type, size, rnd, 0.01);
      ElementType st = type == ElementType.FLOAT32 ? ElementType.FLOAT32 : ElementType.FLOAT64;
      s0 = filled(st, size, rnd, 0.0);
      s1 = filled(st, size, rnd, 0.0);
      s2 = filled(st, size, rnd, 0.0);
    }
  }

  /** The triad yardstick on {@code size} float32 elements. */
  @State(Scope.Thread)
  public static class Triad {
    @Param({"1024", "65536", "16777216"})
    public int size;

    UpdateKernels k;
    ByteBuffer a, b;

    @Setup(Level.Trial)
    public void setup() {
      k = implementation("native");
      SplittableRandom rnd = new SplittableRandom(7);
      a = filled(ElementType.FLOAT32, size, rnd, 1.0);
      b = filled(ElementType.FLOAT32, size, rnd, 1.0);
    }
  }

  @Benchmark
  public void update(Update s) {
    int n = s.size;
    switch (s.kernel) {
      case "sgd" -> s.k.sgd(s.type, s.p, s.g, null, 0, n, 0.01, 0, 0, false, 1, 0);
      case "momentum" -> s.k.sgd(s.type, s.p, s.g, s.s0, 0, n, 0.01, 0.9, 0, false, 1, 0);
      case "adam" -> s.k.adam(s.type, s.p, s.g, s.s0, s.s1, 0, n, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 0);
      case "adagrad" -> s.k.adagrad(s.type, s.p, s.g, s.s0, 0, n, 0.01, 1e-6, 0, 1, 0);
      case "adadelta" ->
          s.k.adadelta(s.type, s.p, s.g, s.s0, s.s1, s.s2, 0, n, 1.0, 0.95, 1e-6, 0, 1, 0);
      default -> throw new IllegalArgumentException(s.kernel);
    }
  }

  @Benchmark
  public void triad(Triad s) {
    s.k.accumulate(ElementType.FLOAT32, s.a, s.b, 0, s.size, 1e-7);
  }

  /** Bytes moved per element by one update (reads plus writes, no read-for-ownership). */
  public static int bytes(String kernel, ElementType type) {
    int e = type.size(), st = type.stateSize();
    return switch (kernel) {
      case "sgd" -> 3 * e;
      case "momentum", "adagrad" -> 3 * e + 2 * st;
      case "adam" -> 3 * e + 4 * st;
      case "adadelta" -> 3 * e + 5 * st;
      case "triad" -> 12;
      default -> throw new IllegalArgumentException(kernel);
    };
  }

  static UpdateKernels implementation(String impl) {
    return switch (impl) {
      case "native" -> Kernels.nativeOrThrow();
      case "java" -> Kernels.java();
      default -> throw new IllegalArgumentException("impl must be native or java: " + impl);
    };
  }

  static ByteBuffer filled(ElementType t, int n, SplittableRandom rnd, double scale) {
    ByteBuffer b = OffHeap.allocate(n * t.size()); // aligned, as the optimizer allocates

    for (int i = 0; i < n; i++) {
      double x = scale * (rnd.nextDouble() - 0.5);
      switch (t) {
        case FLOAT32 -> b.putFloat(4 * i, (float) x);
        case FLOAT64 -> b.putDouble(8 * i, x);
        case INT32 -> b.putInt(4 * i, (int) Math.round(x * 1000));
        default -> throw new IllegalArgumentException(t.toString());
      }
    }
    return b;
  }
}
