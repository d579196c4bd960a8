package org.pserver.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.pserver.ElementType;

/**
 * The cost of one call through the binding: Adam on a single float through {@link NativeKernels}
 * (argument checks, four address look-ups, the JNI transition, dispatch) against an empty JNI call
 * through the same JavaCPP glue. Lives in the kernels package to reach the package-private probe.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(1)
@State(Scope.Thread)
public class CallBench {
  NativeKernels k;
  ByteBuffer p, g, m, v;

  @Setup(Level.Trial)
  public void setup() {
    k = (NativeKernels) Kernels.nativeOrThrow();
    p = one(1f);
    g = one(0.5f);
    m = one(0f);
    v = one(0f);
  }

  private static ByteBuffer one(float x) {
    return ByteBuffer.allocateDirect(4).order(ByteOrder.nativeOrder()).putFloat(0, x);
  }

  @Benchmark
  public int emptyCall() {
    return k.noop();
  }

  @Benchmark
  public void adamOneElement() {
    k.adam(ElementType.FLOAT32, p, g, m, v, 0, 1, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 0);
  }
}
