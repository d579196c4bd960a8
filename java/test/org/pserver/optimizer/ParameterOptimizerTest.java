package org.pserver.optimizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.optimizer.Fixtures.adadelta;
import static org.pserver.optimizer.Fixtures.adagrad;
import static org.pserver.optimizer.Fixtures.adam;
import static org.pserver.optimizer.Fixtures.constLr;
import static org.pserver.optimizer.Fixtures.le;
import static org.pserver.optimizer.Fixtures.sgd;

import java.nio.BufferOverflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.ReadOnlyBufferException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.pserver.ElementType;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.UpdateKernels;

/** The API contract of {@link ParameterOptimizer} apart from saved state: buffers and bad input. */
class ParameterOptimizerTest {
  static final byte[] ADAM = adam(constLr(0.01), 0.9, 0.999, 1e-8, 0.01).setClipNorm(1)
      .build().toByteArray();

  static Iterable<UpdateKernels> kernels() {
    return Fixtures.kernels();
  }

  private static double[] ramp(int n, double scale) {
    double[] v = new double[n];
    for (int i = 0; i < n; i++) {
      v[i] = scale * ((i * 7919 % 23) - 11);
    }
    return v;
  }

  /** {@code le} bytes at {@code offset} of a direct buffer (default big-endian flag) of its own. */
  private static ByteBuffer directAt(ByteBuffer le, int offset) {
    ByteBuffer d = ByteBuffer.allocateDirect(le.remaining() + offset + 3);
    d.position(offset);
    d.put(le.duplicate());
    return d.position(offset).limit(offset + le.remaining());
  }

  /**
   * Every way a gradient can arrive (heap, read-only heap, direct, direct but misaligned or at an
   * offset, big-endian flag on little-endian bytes) gives the same bits, and the gradient is
   * neither written nor moved.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void everyGradientBufferKindGivesTheSameResult(UpdateKernels k) {
    for (ElementType t : ElementType.values()) {
      int n = 37;
      double[] p = ramp(n, t.isFloat() ? 0.1 : 3);
      double[] g = ramp(n, t.isFloat() ? 0.05 : 2);
      ByteBuffer le = le(t, g);
      Map<String, Supplier<ByteBuffer>> kinds = new LinkedHashMap<>();
      kinds.put("heap", () -> le(t, g));
      kinds.put("read-only heap", () -> le(t, g).asReadOnlyBuffer());
      kinds.put("heap at an offset", () -> {
        ByteBuffer h = ByteBuffer.allocate(le.remaining() + 5);
        h.position(5).mark();
        h.put(le.duplicate()).reset();
        return h;
      });
      kinds.put("direct", () -> Fixtures.leDirect(t, g));
      kinds.put("direct, aligned offset", () -> directAt(le, 8));
      kinds.put("direct, misaligned", () -> directAt(le, 1));
      kinds.put("read-only direct, misaligned", () -> directAt(le, 3).asReadOnlyBuffer());
      byte[] expected = null;
      for (Map.Entry<String, Supplier<ByteBuffer>> kind : kinds.entrySet()) {
        ParameterOptimizer o = ParameterOptimizer.create(t, le(t, p), ADAM, k);
        for (int s = 0; s < 3; s++) {
          ByteBuffer grad = kind.getValue().get();
          int position = grad.position();
          ByteBuffer before = copy(grad);
          o.update(t, grad);
          assertEquals(position, grad.position(), kind.getKey() + ": position moved");
          assertEquals(before, copy(grad), kind.getKey() + ": gradient written");
        }
        byte[] state = Io.state(o);
        if (expected == null) {
          expected = state;
        } else {
          assertArrayEquals(expected, state, t + " " + kind.getKey());
        }
      }
    }
  }

  private static ByteBuffer copy(ByteBuffer b) {
    ByteBuffer c = ByteBuffer.allocate(b.remaining());
    c.put(b.duplicate());
    return c.flip();
  }

  /** A heap gradient above the per-thread scratch reuse limit gets a buffer of its own. */
  @Test
  void largeHeapGradient() {
    ElementType t = ElementType.FLOAT32;
    int n = ParameterOptimizer.SCRATCH_REUSE_LIMIT / 4 + 5;
    ByteBuffer g = ByteBuffer.allocate(n * 4).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer gd = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      g.putFloat(4 * i, i % 5 - 2);
      gd.putFloat(4 * i, i % 5 - 2);
    }
    byte[] config = sgd(constLr(0.5), 0, 0, false).build().toByteArray();
    ParameterOptimizer heap = ParameterOptimizer.create(t, ByteBuffer.allocate(n * 4), config, Kernels.get());
    ParameterOptimizer direct = ParameterOptimizer.create(t, ByteBuffer.allocate(n * 4), config, Kernels.get());
    heap.update(t, g);
    direct.update(t, gd);
    assertEquals(direct.weights(), heap.weights());
    assertEquals(-0.5f * ((n - 1) % 5 - 2), heap.weights().getFloat(4 * (n - 1)));
  }

  @ParameterizedTest
  @MethodSource("kernels")
  void createCopiesContentAndConfig(UpdateKernels k) {
    ElementType t = ElementType.FLOAT64;
    ByteBuffer content = Fixtures.leDirect(t, 9, 1, 2, 3);
    content.position(8);
    byte[] config = sgd(constLr(1), 0, 0, false).build().toByteArray();
    ParameterOptimizer o = ParameterOptimizer.create(t, content, config, k);
    assertEquals(8, content.position(), "content position moved");
    assertEquals(3, o.elements());
    assertEquals(24, o.byteLength());
    assertEquals(t, o.type());
    assertEquals(0, o.step());
    content.putDouble(8, 100);
    config[0] ^= 1;
    assertArrayEquals(new double[] {1, 2, 3}, Io.weights(o), "content is copied");
    byte[] c = o.config();
    assertArrayEquals(sgd(constLr(1), 0, 0, false).build().toByteArray(), c, "config is copied");
    c[0] ^= 1;
    assertArrayEquals(sgd(constLr(1), 0, 0, false).build().toByteArray(), o.config());
    assertTrue(o.describe().contains("Sgd") && o.describe().contains("3 x FLOAT64"), o.describe());
  }

  @ParameterizedTest
  @MethodSource("kernels")
  void weightsViewIsLiveAndReadOnly(UpdateKernels k) {
    ElementType t = ElementType.FLOAT32;
    ParameterOptimizer o = ParameterOptimizer.create(t, le(t, 1, 2), new byte[0], k);
    ByteBuffer w = o.weights();
    assertTrue(w.isReadOnly());
    assertTrue(w.isDirect());
    assertEquals(0, w.position());
    assertEquals(8, w.limit());
    assertEquals(ByteOrder.nativeOrder(), w.order());
    assertThrows(ReadOnlyBufferException.class, () -> w.putFloat(0, 5));
    o.update(t, le(t, 0.5, 0.25));
    assertEquals(0.5f, w.getFloat(0), "the view follows updates");
    assertEquals(1.75f, w.getFloat(4));
  }

  @ParameterizedTest
  @MethodSource("kernels")
  void copyWeightsToWritesLittleEndianAndAdvances(UpdateKernels k) {
    ElementType t = ElementType.INT64;
    ParameterOptimizer o = ParameterOptimizer.create(t, le(t, 5, -6), new byte[0], k);
    ByteBuffer dst = ByteBuffer.allocate(20).order(ByteOrder.BIG_ENDIAN);
    dst.position(2);
    o.copyWeightsTo(dst);
    assertEquals(18, dst.position());
    assertEquals(5, dst.order(ByteOrder.LITTLE_ENDIAN).getLong(2));
    assertEquals(-6, dst.getLong(10));
    ByteBuffer small = ByteBuffer.allocate(15);
    assertThrows(BufferOverflowException.class, () -> o.copyWeightsTo(small));
    assertEquals(0, small.position());
    assertArrayEquals(new byte[15], small.array(), "nothing written");
    assertThrows(ReadOnlyBufferException.class,
        () -> o.copyWeightsTo(ByteBuffer.allocate(16).asReadOnlyBuffer()));
  }

  @Test
  void stateSizeCountsEveryBuffer() {
    UpdateKernels k = Kernels.java();
    record Case(byte[] config, int buffers) {}
    List<Case> cases = List.of(
        new Case(sgd(constLr(1), 0, 0.1, true).build().toByteArray(), 0),
        new Case(sgd(constLr(1), 0.9, 0, false).build().toByteArray(), 1),
        new Case(adam(constLr(1), 0.9, 0.99, 1e-8, 0).build().toByteArray(), 2),
        new Case(adagrad(constLr(1), 1e-6, 0).build().toByteArray(), 1),
        new Case(adadelta(constLr(1), 0.9, 1e-6, 0).build().toByteArray(), 3));
    for (Case c : cases) {
      for (ElementType t : ElementType.values()) {
        ParameterOptimizer o = ParameterOptimizer.create(t, le(t, new double[10]), c.config(), k);
        assertEquals(64 + 10L * t.size() + c.buffers() * 10L * t.stateSize() + 4, o.stateSize());
        assertEquals(o.stateSize(), Io.state(o).length);
      }
    }
  }

  // --- bad input ---------------------------------------------------------------------------------

  @Test
  void badContentIsRejected() {
    UpdateKernels k = Kernels.java();
    OptimizerException e = assertThrows(OptimizerException.class,
        () -> ParameterOptimizer.create(ElementType.FLOAT32, ByteBuffer.allocate(0), new byte[0], k));
    assertTrue(e.getMessage().contains("empty parameter"), e.getMessage());
    ByteBuffer atEnd = ByteBuffer.allocate(8).position(8);
    assertThrows(OptimizerException.class,
        () -> ParameterOptimizer.create(ElementType.FLOAT32, atEnd, new byte[0], k));
    e = assertThrows(OptimizerException.class,
        () -> ParameterOptimizer.create(ElementType.FLOAT64, ByteBuffer.allocate(12), new byte[0], k));
    assertEquals("content length 12 bytes is not a multiple of the FLOAT64 element size 8",
        e.getMessage());
    e = assertThrows(OptimizerException.class,
        () -> ParameterOptimizer.create(ElementType.INT32, ByteBuffer.allocate(7), new byte[0], k));
    assertTrue(e.getMessage().contains("7 bytes") && e.getMessage().contains("INT32"), e.getMessage());
  }

  @Test
  void badConfigIsRejectedAtCreation() {
    ByteBuffer content = le(ElementType.FLOAT32, 1, 2);
    byte[] adamWithoutEpsilon = adam(constLr(0.1), 0.9, 0.999, 0, 0).build().toByteArray();
    OptimizerException e = assertThrows(OptimizerException.class, () -> ParameterOptimizer.create(
        ElementType.FLOAT32, content, adamWithoutEpsilon, Kernels.java()));
    assertTrue(e.getMessage().contains("adam.epsilon"), e.getMessage());
    e = assertThrows(OptimizerException.class, () -> ParameterOptimizer.create(
        ElementType.FLOAT32, content, new byte[] {0x08, 0x07}, Kernels.java()));
    assertTrue(e.getMessage().contains("unknown optimizer 7"), e.getMessage());
    assertEquals(0, content.position());
  }

  /** A wrong gradient type or length is rejected naming both values, and nothing changes. */
  @ParameterizedTest
  @MethodSource("kernels")
  void badGradientChangesNothing(UpdateKernels k) {
    ElementType t = ElementType.FLOAT32;
    ParameterOptimizer o = ParameterOptimizer.create(t, le(t, 1, 2, 3), ADAM, k);
    o.update(t, le(t, 0.5, -0.5, 1));
    byte[] before = Io.state(o);
    record Bad(ElementType type, ByteBuffer gradient, String... parts) {}
    List<Bad> bad = List.of(
        new Bad(ElementType.INT32, le(ElementType.INT32, 1, 2, 3), "INT32", "FLOAT32"),
        new Bad(ElementType.FLOAT64, le(ElementType.FLOAT64, 1, 2, 3), "FLOAT64", "FLOAT32"),
        new Bad(t, le(t, 1, 2), "gradient has 8 bytes", "has 12 (3 elements)"),
        new Bad(t, le(t, 1, 2, 3, 4), "gradient has 16 bytes", "has 12"),
        new Bad(t, ByteBuffer.allocate(0), "gradient has 0 bytes"),
        new Bad(t, ByteBuffer.allocate(13), "gradient has 13 bytes"),
        new Bad(t, Fixtures.leDirect(t, 1, 2, 3).position(4), "gradient has 8 bytes"));
    for (Bad b : bad) {
      OptimizerException e = assertThrows(OptimizerException.class, () -> o.update(b.type(), b.gradient()));
      for (String part : b.parts()) {
        assertTrue(e.getMessage().contains(part), "expected '" + part + "' in: " + e.getMessage());
      }
      assertEquals(1, o.step(), "step changed");
      assertArrayEquals(before, Io.state(o), "weights or state changed: " + e.getMessage());
    }
    assertThrows(NullPointerException.class, () -> o.update(t, null));
    assertThrows(NullPointerException.class, () -> o.update(null, le(t, 1, 2, 3)));
    assertArrayEquals(before, Io.state(o));
  }

  /**
   * clip_norm on a finite float64 gradient whose squared norm overflows a double: the gradient is
   * scaled to clip_norm, not dropped. (One plain sum of squares is +Inf, and clip_norm / Inf = 0
   * used to discard the gradient while the step counter still advanced.)
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void clipNormScalesAGradientWhoseSquaredNormOverflows(UpdateKernels k) {
    ElementType t = ElementType.FLOAT64;
    byte[] clip1 = sgd(constLr(1), 0, 0, false).setClipNorm(1).build().toByteArray();
    // norm 5e200 (its square, 2.5e401, overflows): [3e200, -4e200] -> [0.6, -0.8], SGD lr 1
    ParameterOptimizer o = ParameterOptimizer.create(t, le(t, 0, 0), clip1, k);
    o.update(t, le(t, 3e200, -4e200));
    assertArrayEquals(new double[] {-0.6, 0.8}, Io.weights(o), 1e-15);
    assertEquals(1, o.step());
    // the norm itself overflows (2 * Double.MAX_VALUE): each element scales to 0.5
    double max = Double.MAX_VALUE;
    o = ParameterOptimizer.create(t, le(t, 0, 0, 0, 0), clip1, k);
    o.update(t, le(t, max, -max, max, -max));
    assertArrayEquals(new double[] {-0.5, 0.5, -0.5, 0.5}, Io.weights(o), 1e-15);
    // clip_value first: [1e300, -1e300, 5] -> [1e200, -1e200, 5], norm sqrt(2)e200 -> clip_norm 2
    o = ParameterOptimizer.create(t, le(t, 0, 0, 0),
        sgd(constLr(1), 0, 0, false).setClipValue(1e200).setClipNorm(2).build().toByteArray(), k);
    o.update(t, le(t, 1e300, -1e300, 5));
    double r = Math.sqrt(2);
    assertArrayEquals(new double[] {-r, r, -5 * 2 / (r * 1e200)}, Io.weights(o), 1e-15);
    // an overflowing sum whose norm is still below clip_norm is left as it is
    o = ParameterOptimizer.create(t, le(t, 0, 0),
        sgd(constLr(1), 0, 0, false).setClipNorm(1e300).build().toByteArray(), k);
    o.update(t, le(t, 3e200, -4e200));
    assertArrayEquals(new double[] {-3e200, 4e200}, Io.weights(o), 0);
  }

  /** NaN and infinities are the service's business (kernels.allFinite); update applies them. */
  @ParameterizedTest
  @MethodSource("kernels")
  void nonFiniteGradientsAreApplied(UpdateKernels k) {
    ElementType t = ElementType.FLOAT64;
    ParameterOptimizer o = ParameterOptimizer.create(t, le(t, 1, 2), new byte[0], k);
    o.update(t, le(t, Double.NaN, Double.POSITIVE_INFINITY));
    assertEquals(1, o.step());
    double[] w = Io.weights(o);
    assertTrue(Double.isNaN(w[0]));
    assertEquals(Double.NEGATIVE_INFINITY, w[1]);
  }
}
