package org.pserver.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Proxy;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.pserver.ElementType;

/** Known answers from the spec, integer exactness, argument checks and the selection rule. */
class KernelsContractTest {
  static List<UpdateKernels> implementations() {
    return UpdateKernelsDifferentialTest.implementations();
  }

  private static ByteBuffer direct(int bytes) {
    return ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
  }

  private static ByteBuffer f32(float... v) {
    ByteBuffer b = direct(4 * v.length);
    for (int i = 0; i < v.length; i++) {
      b.putFloat(4 * i, v[i]);
    }
    return b;
  }

  private static float[] f32(ByteBuffer b) {
    float[] v = new float[b.capacity() / 4];
    for (int i = 0; i < v.length; i++) {
      v[i] = b.getFloat(4 * i);
    }
    return v;
  }

  private static ByteBuffer i64(long... v) {
    ByteBuffer b = direct(8 * v.length);
    for (int i = 0; i < v.length; i++) {
      b.putLong(8 * i, v[i]);
    }
    return b;
  }

  /** Spec 4.6 worked values (p = g = [0,1,2,3,4], one step), printed there to 8 digits. */
  private static void assertNear(double[] want, float[] got, String what) {
    for (int i = 0; i < want.length; i++) {
      assertEquals(want[i], got[i], 4 * Math.ulp((float) Math.max(Math.abs(want[i]), 1e-30)), what + "[" + i + "]");
    }
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void specWorkedValues(UpdateKernels k) {
    ElementType t = ElementType.FLOAT32;
    ByteBuffer p = f32(0, 1, 2, 3, 4), g = f32(0, 1, 2, 3, 4);
    k.sgd(t, p, g, null, 0, 5, 0.1, 0, 0, false, 1, 0);
    assertNear(new double[] {0, 0.89999998, 1.79999995, 2.70000005, 3.5999999}, f32(p), "sgd");

    p = f32(0, 1, 2, 3, 4);
    k.sgd(t, p, g, f32(0, 0, 0, 0, 0), 0, 5, 0.1, 0.9, 0, false, 1, 0);
    assertNear(new double[] {0, 0.9, 1.8, 2.7, 3.6}, f32(p), "momentum step 1");

    p = f32(0, 1, 2, 3, 4);
    k.sgd(t, p, g, f32(0, 0, 0, 0, 0), 0, 5, 0.1, 0.9, 0, true, 1, 0);
    assertNear(new double[] {0, 0.81, 1.62, 2.43, 3.24}, f32(p), "nesterov");

    p = f32(0, 1, 2, 3, 4);
    double lrT = 0.1 * Math.sqrt(1 - 0.1) / (1 - 0.9);
    k.adam(t, p, g, f32(0, 0, 0, 0, 0), f32(0, 0, 0, 0, 0), 0, 5, lrT, 0.9, 0.1, 1e-3, 0, 1, 0);
    assertNear(new double[] {0, 0.90005553, 1.90001392, 2.90000606, 3.90000343}, f32(p), "adam");

    p = f32(0, 1, 2, 3, 4);
    k.adadelta(t, p, g, f32(0, 0, 0, 0, 0), f32(0, 0, 0, 0, 0), f32(0, 0, 0, 0, 0), 0, 5, 1.0, 0.9, 1e-5, 0, 1, 0);
    assertNear(new double[] {0, 0.99000049, 1.99000013, 2.99000001, 3.99000001}, f32(p), "adadelta");

    // The spec's Adagrad value (1.09999955, ...) ascends; ours descends by the same amount.
    p = f32(0, 1, 2, 3, 4);
    k.adagrad(t, p, g, f32(0, 0, 0, 0, 0), 0, 5, 0.1, 1e-5, 0, 1, 0);
    assertNear(new double[] {0, 1 - 0.09999955, 2 - 0.0999999, 3 - 0.0999999, 4 - 0.0999999}, f32(p), "adagrad");
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void nesterovWithoutMomentumKeepsWeightDecay(UpdateKernels k) {
    ByteBuffer p = f32(10), g = f32(0);
    k.sgd(ElementType.FLOAT32, p, g, null, 0, 1, 0.1, 0, 0.5, true, 1, 0);
    assertEquals(10 - 0.1f * 0.5f * 10, p.getFloat(0), 1e-6, "the seed dropped decay here");
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void integerSgdWithLrOneAccumulatesExactly(UpdateKernels k) {
    long big = (1L << 60) + 1; // far beyond double's 53 bits: must not go through a double
    ByteBuffer p = i64(big, 0, -5), g = i64(1, 1, 1);
    for (int step = 0; step < 1000; step++) {
      k.sgd(ElementType.INT64, p, g, null, 0, 3, 1.0, 0, 0, false, 1, 0);
    }
    assertEquals(big - 1000, p.getLong(0));
    assertEquals(-1000, p.getLong(8));
    assertEquals(-1005, p.getLong(16));
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void integersRoundHalfToEvenAndSaturate(UpdateKernels k) {
    ByteBuffer p = direct(16), g = direct(16);
    int[] ps = {1, 2, Integer.MAX_VALUE, Integer.MIN_VALUE};
    int[] gs = {1, 1, 3, -3};
    for (int i = 0; i < 4; i++) {
      p.putInt(4 * i, ps[i]);
      g.putInt(4 * i, gs[i]);
    }
    k.accumulate(ElementType.INT32, p, g, 0, 4, 0.5);
    // 1 + 0.5 = 1.5 -> 2 (even); 2 + 0.5 = 2.5 -> 2 (even); MAX + 1.5 saturates; MIN - 1.5 too.
    assertEquals(2, p.getInt(0));
    assertEquals(2, p.getInt(4));
    assertEquals(Integer.MAX_VALUE, p.getInt(8));
    assertEquals(Integer.MIN_VALUE, p.getInt(12));

    ByteBuffer u = i64(-2L, 5), gu = i64(7, 9); // uint64: 2^64-2 + 7 saturates at 2^64-1
    k.accumulate(ElementType.UINT64, u, gu, 0, 1, 1.0);
    assertEquals(-1L, u.getLong(0));
    k.accumulate(ElementType.UINT64, u, gu, 1, 1, -1.0); // 5 - 9 clamps at 0
    assertEquals(0L, u.getLong(8));
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void badArgumentsThrowBeforeTouchingAnything(UpdateKernels k) {
    ElementType t = ElementType.FLOAT32;
    ByteBuffer p = f32(1, 2, 3, 4), g = f32(1, 1, 1, 1), m = f32(0, 0, 0, 0), v = f32(0, 0, 0, 0);
    float[] before = f32(p);
    ByteBuffer heap = ByteBuffer.allocate(16).order(ByteOrder.nativeOrder());
    ByteBuffer bigEndian = direct(16).order(ByteOrder.BIG_ENDIAN);
    ByteBuffer shortState = f32(0, 0, 0);
    List<Consumer<UpdateKernels>> bad =
        List.of(
            x -> x.adam(t, heap, g, m, v, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, heap, m, v, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, bigEndian, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, shortState, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, v, 1, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, v, -1, 2, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, v, 0, -2, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, null, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, 0),
            x -> x.adam(t, p, g, m, v, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, 1, -1),
            x -> x.adam(t, p, g, m, v, 0, 4, 0.1, 0.9, 0.99, 1e-8, 0, Double.NaN, 0),
            x -> x.sgd(t, p, g, null, 0, 4, 0.1, 0.9, 0, false, 1, 0),
            x -> x.sgd(t, p.asReadOnlyBuffer().order(ByteOrder.nativeOrder()), g, null, 0, 4, 0.1, 0, 0, false, 1, 0),
            x -> x.sgd(ElementType.FLOAT64, p, g, null, 0, 4, 0.1, 0, 0, false, 1, 0),
            x -> x.adagrad(t, p, g, shortState, 0, 4, 0.1, 1e-6, 0, 1, 0),
            x -> x.adadelta(t, p, g, m, v, shortState, 0, 4, 1, 0.9, 1e-6, 0, 1, 0),
            x -> x.accumulate(t, p, heap, 0, 4, 1),
            x -> x.assign(t, p, f32(1, 2), 0, 4),
            x -> x.sumOfSquares(t, g, 3, 2, 0),
            x -> x.sumOfSquares(t, g, 0, 4, 0, 0),
            x -> x.sumOfSquares(t, g, 0, 4, 0, -0x1p-600),
            x -> x.sumOfSquares(t, g, 0, 4, 0, Double.NaN),
            x -> x.sumOfSquares(t, g, 0, 4, 0, Double.POSITIVE_INFINITY),
            x -> x.allFinite(t, heap, 0, 4));
    for (int i = 0; i < bad.size(); i++) {
      int n = i;
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> bad.get(n).accept(k), "case " + n);
      assertFalse(e.getMessage().isBlank());
      assertArrayEquals(before, f32(p), "case " + n + " touched the parameter");
      assertArrayEquals(new float[4], f32(m), "case " + n + " touched the state");
    }
  }

  /**
   * Finite float64 elements whose squares overflow: the plain sum is +Inf, the sum scaled by
   * 2^-600 is finite and, the scale being a power of two, exactly the scaled squares' sum.
   */
  @ParameterizedTest
  @MethodSource("implementations")
  void sumOfSquaresScaleAvoidsOverflow(UpdateKernels k) {
    ElementType t = ElementType.FLOAT64;
    ByteBuffer g = direct(24);
    double[] v = {3e200, -4e200, Double.MAX_VALUE};
    for (int i = 0; i < 3; i++) {
      g.putDouble(8 * i, v[i]);
    }
    assertEquals(Double.POSITIVE_INFINITY, k.sumOfSquares(t, g, 0, 2, 0));
    double y0 = 3e200 * 0x1p-600, y1 = -4e200 * 0x1p-600;
    assertEquals(y0 * y0 + y1 * y1, k.sumOfSquares(t, g, 0, 2, 0, 0x1p-600), 0);
    assertEquals(5e200, Math.sqrt(k.sumOfSquares(t, g, 0, 2, 0, 0x1p-600)) / 0x1p-600, 1e186);
    // even Double.MAX_VALUE squared, scaled, is far from overflowing
    assertTrue(Double.isFinite(k.sumOfSquares(t, g, 0, 3, 0, 0x1p-600)));
    // clipping comes first: clip 1e200 leaves 1e200, -1e200, 1e200
    double c = 1e200 * 0x1p-600;
    assertEquals((c * c + c * c) + c * c, k.sumOfSquares(t, g, 0, 3, 1e200, 0x1p-600), 0);
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void positionIsIgnoredAndLimitIsChecked(UpdateKernels k) {
    ByteBuffer p = f32(1, 2, 3), g = f32(1, 1, 1);
    p.position(8);
    g.position(4);
    k.accumulate(ElementType.FLOAT32, p, g, 0, 3, 1);
    assertArrayEquals(new float[] {2, 3, 4}, f32(p));
    g.limit(8);
    assertThrows(IllegalArgumentException.class, () -> k.accumulate(ElementType.FLOAT32, p, g, 0, 3, 1));
  }

  @Test
  void selectionRule() {
    UpdateKernels fake = new ReferenceKernels();
    assertSame(Kernels.java(), Kernels.decide(null, null, "no lib").kernels());
    assertTrue(Kernels.decide("", null, "no lib").description().contains("no lib"));
    assertSame(fake, Kernels.decide("AUTO", fake, null).kernels());
    assertSame(fake, Kernels.decide("native", fake, null).kernels());
    assertSame(Kernels.java(), Kernels.decide(" java ", fake, null).kernels());
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> Kernels.decide("native", null, "UnsatisfiedLinkError: x"));
    assertTrue(e.getMessage().contains("UnsatisfiedLinkError: x"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> Kernels.decide("fast", fake, null));
  }

  /**
   * CI sets pserver.kernels.expect=native when a C++ compiler is present: then the native kernels
   * must have loaded and passed their self-test, or the native path would silently go untested.
   */
  @Test
  void nativeLoadedWhenExpected() {
    String expect = System.getProperty("pserver.kernels.expect", "any");
    if (expect.equals("native")) {
      assertTrue(Kernels.nativeKernels().isPresent(), "native kernels expected but unavailable: " + Kernels.nativeUnavailableReason().orElse("?"));
      assertTrue(Kernels.get().name().startsWith("native"), Kernels.description());
    } else {
      assertEquals("any", expect, "pserver.kernels.expect must be 'native' or 'any'");
      assertTrue(Kernels.nativeKernels().isPresent() || Kernels.nativeUnavailableReason().isPresent());
    }
  }

  /**
   * The start-up self-test decides whether native kernels are used: a kernel that returns NaN
   * must fail it (a plain {@code |got - want| > tol} test is false for NaN and would pass it).
   */
  @Test
  void selfTestFailsOnNaN() {
    UpdateKernels java = Kernels.java();
    UpdateKernels nanAdam = (UpdateKernels) Proxy.newProxyInstance(
        UpdateKernels.class.getClassLoader(), new Class<?>[] {UpdateKernels.class},
        (proxy, method, args) -> {
          if (method.getName().equals("name")) {
            return "nan-adam";
          }
          Object r = method.invoke(java, args);
          if (method.getName().equals("adam")) {
            ((ByteBuffer) args[1]).putFloat(4 * ((int) args[5] + 1), Float.NaN);
          }
          return r;
        });
    IllegalStateException e =
        assertThrows(IllegalStateException.class, () -> KnownAnswers.knownAnswers(nanAdam));
    assertTrue(e.getMessage().contains("adam element 1 is NaN"), e.getMessage());
    assertFalse(SelfCheck.run(nanAdam).ok());
    KnownAnswers.knownAnswers(java); // and the unpoisoned kernels pass
  }

  @ParameterizedTest
  @MethodSource("implementations")
  void selfCheckPasses(UpdateKernels k) {
    SelfCheck.Result r = SelfCheck.run(k);
    assertTrue(r.ok(), r.report());
  }
}
