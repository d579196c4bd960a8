package org.pserver.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.pserver.ElementType;

/**
 * Runs every kernel on every element type through every available implementation (the Java
 * fallback always; the native kernels when they loaded) and through {@link ReferenceKernels}, on
 * the same inputs, and demands bit-identical results: lengths 0..67 (every SIMD lane edge up to
 * AVX-512 times four) and a few large ones, start offsets 0, 1 and 3 elements, guard elements on
 * both sides that must stay untouched, and special values (+-0, subnormals, huge magnitudes, NaN,
 * +-Inf; integer extremes, saturating steps and exact .5 ties).
 *
 * <p>Tolerance: none. Both implementations perform the same IEEE operations in the same order
 * (the native build uses {@code -ffp-contract=off}); floats must have identical bits, except that
 * any NaN equals any NaN. The seed of every case is in its failure message.
 */
class UpdateKernelsDifferentialTest {
  private static final int GUARD = 5;
  private static final int[] OFFSETS = {0, 1, 3};
  private static final int[] LARGE = {1000, 4099, 2 * JavaKernels.TILE + 13};

  /** One kernel call with fixed hyper-parameters, named for the report. */
  interface Op {
    void run(UpdateKernels k, ElementType t, ByteBuffer[] b, int off, int len);
  }

  record Case(String name, int states, Op op) {}

  static List<Case> cases() {
    List<Case> c = new ArrayList<>();
    c.add(new Case("sgd", 0, (k, t, b, o, n) -> k.sgd(t, b[0], b[1], null, o, n, 0.5, 0, 0, false, 1, 0)));
    c.add(new Case("sgd decay nesterov(no-op)", 0, (k, t, b, o, n) -> k.sgd(t, b[0], b[1], null, o, n, 0.1, 0, 0.01, true, 1, 0)));
    c.add(new Case("sgd momentum", 1, (k, t, b, o, n) -> k.sgd(t, b[0], b[1], b[2], o, n, 0.05, 0.9, 0, false, 1, 0)));
    c.add(new Case("sgd momentum decay nesterov clip", 1, (k, t, b, o, n) -> k.sgd(t, b[0], b[1], b[2], o, n, 0.05, 0.9, 0.01, true, 0.5, 3.0)));
    c.add(new Case("adam", 2, (k, t, b, o, n) -> k.adam(t, b[0], b[1], b[2], b[3], o, n, 0.01, 0.9, 0.999, 1e-8, 0, 1, 0)));
    c.add(new Case("adam decay clip scale", 2, (k, t, b, o, n) -> k.adam(t, b[0], b[1], b[2], b[3], o, n, 0.3, 0.8, 0.9, 1e-3, 0.02, 0.25, 2.5)));
    c.add(new Case("adagrad", 1, (k, t, b, o, n) -> k.adagrad(t, b[0], b[1], b[2], o, n, 0.1, 1e-6, 0, 1, 0)));
    c.add(new Case("adagrad decay clip", 1, (k, t, b, o, n) -> k.adagrad(t, b[0], b[1], b[2], o, n, 0.7, 1e-5, 0.1, 1, 1.5)));
    c.add(new Case("adadelta", 3, (k, t, b, o, n) -> k.adadelta(t, b[0], b[1], b[2], b[3], b[4], o, n, 1.0, 0.95, 1e-6, 0, 1, 0)));
    c.add(new Case("adadelta decay scale", 3, (k, t, b, o, n) -> k.adadelta(t, b[0], b[1], b[2], b[3], b[4], o, n, 0.5, 0.9, 1e-5, 0.05, 3.0, 0)));
    c.add(new Case("accumulate 1", 0, (k, t, b, o, n) -> k.accumulate(t, b[0], b[1], o, n, 1.0)));
    c.add(new Case("accumulate -0.5 (ties)", 0, (k, t, b, o, n) -> k.accumulate(t, b[0], b[1], o, n, -0.5)));
    c.add(new Case("accumulate 3.7", 0, (k, t, b, o, n) -> k.accumulate(t, b[0], b[1], o, n, 3.7)));
    c.add(new Case("assign", 0, (k, t, b, o, n) -> k.assign(t, b[0], b[1], o, n)));
    return c;
  }

  static List<UpdateKernels> implementations() {
    List<UpdateKernels> l = new ArrayList<>();
    l.add(Kernels.java());
    Kernels.nativeKernels().ifPresent(l::add);
    return l;
  }

  @TestFactory
  Stream<DynamicTest> everyKernelTypeLengthAndOffset() {
    List<DynamicTest> tests = new ArrayList<>();
    for (UpdateKernels impl : implementations()) {
      for (Case c : cases()) {
        for (ElementType t : ElementType.values()) {
          tests.add(
              DynamicTest.dynamicTest(
                  impl.name() + " " + c.name() + " " + t, () -> checkAllShapes(impl, c, t)));
        }
      }
    }
    return tests.stream();
  }

  @TestFactory
  Stream<DynamicTest> reductions() {
    List<DynamicTest> tests = new ArrayList<>();
    for (UpdateKernels impl : implementations()) {
      for (ElementType t : ElementType.values()) {
        tests.add(DynamicTest.dynamicTest(impl.name() + " sumOfSquares/allFinite " + t, () -> checkReductions(impl, t)));
      }
    }
    return tests.stream();
  }

  private static void checkAllShapes(UpdateKernels impl, Case c, ElementType t) {
    UpdateKernels ref = new ReferenceKernels();
    UpdateKernels java = Kernels.java();
    for (int len : lengths()) {
      for (int off : OFFSETS) {
        long seed = 0x9E3779B97F4A7C15L * (31L * len + off) + t.code() * 1_000_003L + c.name().hashCode();
        Buffers in = Buffers.random(t, c.states(), off, len, new SplittableRandom(seed));
        Buffers want = in.copy(), got = in.copy();
        c.op().run(ref, t, want.all(), GUARD + off, len);
        c.op().run(impl, t, got.all(), GUARD + off, len);
        String where = impl.name() + " " + c.name() + " " + t + " len=" + len + " off=" + off + " seed=" + seed;
        got.assertSame(want, t, where + " vs reference");
        got.assertGuardsUntouched(in, GUARD + off, len, t, where);
        if (impl != java) {
          Buffers j = in.copy();
          c.op().run(java, t, j.all(), GUARD + off, len);
          got.assertSame(j, t, where + " vs java");
        }
      }
    }
  }

  private static void checkReductions(UpdateKernels impl, ElementType t) {
    UpdateKernels ref = new ReferenceKernels();
    for (int len : lengths()) {
      for (int off : OFFSETS) {
        long seed = 77L * len + off + 1000L * t.code();
        Buffers in = Buffers.random(t, 0, off, len, new SplittableRandom(seed));
        String where = impl.name() + " " + t + " len=" + len + " off=" + off + " seed=" + seed;
        for (double clip : new double[] {0, 0.75, 1e6}) {
          // 2^-600: the overflow scale of norm clipping (the inputs include 1e300 for float64)
          for (double scale : new double[] {1, 0x1p-600}) {
            double want = ref.sumOfSquares(t, in.grad(), GUARD + off, len, clip, scale);
            double got = impl.sumOfSquares(t, in.grad(), GUARD + off, len, clip, scale);
            if (!(Double.isNaN(want) && Double.isNaN(got))) {
              assertEquals(Double.doubleToLongBits(want), Double.doubleToLongBits(got),
                  where + " clip=" + clip + " scale=" + scale + ": " + got + " vs " + want);
            }
          }
        }
        assertEquals(
            ref.allFinite(t, in.grad(), GUARD + off, len),
            impl.allFinite(t, in.grad(), GUARD + off, len),
            where);
      }
    }
  }

  static int[] lengths() {
    int[] l = new int[68 + LARGE.length];
    for (int i = 0; i <= 67; i++) {
      l[i] = i;
    }
    System.arraycopy(LARGE, 0, l, 68, LARGE.length);
    return l;
  }

  /** Parameter, gradient and up to three state buffers, with guards on both sides. */
  static final class Buffers {
    final ByteBuffer[] b;

    Buffers(ByteBuffer[] b) {
      this.b = b;
    }

    ByteBuffer[] all() {
      return b;
    }

    ByteBuffer grad() {
      return b[1];
    }

    static Buffers random(ElementType t, int states, int off, int len, SplittableRandom rnd) {
      int n = GUARD + off + len + GUARD;
      ByteBuffer[] b = new ByteBuffer[5];
      b[0] = values(t, n, rnd, false);
      b[1] = values(t, n, rnd, false);
      ElementType st = t == ElementType.FLOAT32 ? ElementType.FLOAT32 : ElementType.FLOAT64;
      for (int i = 0; i < 3; i++) {
        // Unused state slots still get buffers so every case can index b[2..4].
        b[2 + i] = values(st, n, rnd, true);
      }
      return new Buffers(b);
    }

    Buffers copy() {
      ByteBuffer[] c = new ByteBuffer[b.length];
      for (int i = 0; i < b.length; i++) {
        c[i] = ByteBuffer.allocateDirect(b[i].capacity()).order(ByteOrder.nativeOrder());
        c[i].put(0, b[i], 0, b[i].capacity());
      }
      return new Buffers(c);
    }

    void assertSame(Buffers want, ElementType t, String where) {
      for (int k = 0; k < b.length; k++) {
        ElementType et = k < 2 ? t : (t == ElementType.FLOAT32 ? ElementType.FLOAT32 : ElementType.FLOAT64);
        int n = b[k].capacity() / et.size();
        for (int i = 0; i < n; i++) {
          if (!sameElement(et, b[k], want.b[k], i)) {
            fail(where + ": buffer " + NAMES[k] + " element " + i + " is " + show(et, b[k], i) + ", expected " + show(et, want.b[k], i));
          }
        }
      }
    }

    void assertGuardsUntouched(Buffers before, int start, int len, ElementType t, String where) {
      for (int k = 0; k < b.length; k++) {
        int es = k < 2 ? t.size() : t.stateSize();
        for (int i = 0; i < b[k].capacity(); i++) {
          boolean inside = i >= start * es && i < (start + len) * es;
          if (!inside && b[k].get(i) != before.b[k].get(i)) {
            fail(where + ": " + NAMES[k] + " byte " + i + " outside the range changed");
          }
        }
      }
    }

    private static final String[] NAMES = {"param", "grad", "state0", "state1", "state2"};
  }

  static boolean sameElement(ElementType t, ByteBuffer a, ByteBuffer b, int i) {
    return switch (t) {
      case FLOAT32 -> {
        float x = a.getFloat(4 * i), y = b.getFloat(4 * i);
        yield (Float.isNaN(x) && Float.isNaN(y)) || Float.floatToRawIntBits(x) == Float.floatToRawIntBits(y);
      }
      case FLOAT64 -> {
        double x = a.getDouble(8 * i), y = b.getDouble(8 * i);
        yield (Double.isNaN(x) && Double.isNaN(y)) || Double.doubleToRawLongBits(x) == Double.doubleToRawLongBits(y);
      }
      case INT32, UINT32 -> a.getInt(4 * i) == b.getInt(4 * i);
      case INT64, UINT64 -> a.getLong(8 * i) == b.getLong(8 * i);
    };
  }

  static String show(ElementType t, ByteBuffer b, int i) {
    return switch (t) {
      case FLOAT32 -> b.getFloat(4 * i) + " (0x" + Integer.toHexString(Float.floatToRawIntBits(b.getFloat(4 * i))) + ")";
      case FLOAT64 -> b.getDouble(8 * i) + " (0x" + Long.toHexString(Double.doubleToRawLongBits(b.getDouble(8 * i))) + ")";
      case INT32 -> Integer.toString(b.getInt(4 * i));
      case UINT32 -> Integer.toUnsignedString(b.getInt(4 * i));
      case INT64 -> Long.toString(b.getLong(8 * i));
      case UINT64 -> Long.toUnsignedString(b.getLong(8 * i));
    };
  }

  /**
   * Random elements with specials mixed in. State buffers ({@code state}) are kept mostly
   * non-negative so that second-moment accumulators look like real ones, with specials still
   * possible.
   */
  static ByteBuffer values(ElementType t, int n, SplittableRandom rnd, boolean state) {
    ByteBuffer b = ByteBuffer.allocateDirect(n * t.size()).order(ByteOrder.nativeOrder());
    for (int i = 0; i < n; i++) {
      int pick = rnd.nextInt(100);
      switch (t) {
        case FLOAT32 -> b.putFloat(4 * i, (float) floatValue(pick, rnd, state, true));
        case FLOAT64 -> b.putDouble(8 * i, floatValue(pick, rnd, state, false));
        case INT32 -> b.putInt(4 * i, pick < 5 ? Integer.MIN_VALUE : pick < 10 ? Integer.MAX_VALUE : pick < 20 ? rnd.nextInt() : rnd.nextInt(-50, 50));
        case UINT32 -> b.putInt(4 * i, pick < 5 ? 0 : pick < 10 ? -1 : pick < 20 ? rnd.nextInt() : rnd.nextInt(0, 100));
        case INT64 -> b.putLong(8 * i, pick < 5 ? Long.MIN_VALUE : pick < 10 ? Long.MAX_VALUE : pick < 20 ? rnd.nextLong() : rnd.nextLong(-50, 50));
        case UINT64 -> b.putLong(8 * i, pick < 5 ? 0 : pick < 10 ? -1L : pick < 20 ? rnd.nextLong() : rnd.nextLong(0, 100));
      }
    }
    return b;
  }

  private static double floatValue(int pick, SplittableRandom rnd, boolean state, boolean f32) {
    double sub = f32 ? Float.MIN_VALUE * (1 + rnd.nextInt(1000)) : Double.MIN_VALUE * (1 + rnd.nextInt(1000));
    double huge = f32 ? 3e37 : 1e300;
    return switch (pick) {
      case 0 -> 0.0;
      case 1 -> -0.0;
      case 2 -> sub;
      case 3 -> -sub;
      case 4 -> huge * (state ? 1 : (rnd.nextBoolean() ? 1 : -1));
      case 5 -> Double.NaN;
      case 6 -> Double.POSITIVE_INFINITY;
      case 7 -> state ? 1e-30 : Double.NEGATIVE_INFINITY;
      case 8 -> rnd.nextInt(-8, 8) + 0.5; // exact halves: ties for the integer rule
      default -> state ? rnd.nextDouble(0, 4) : rnd.nextDouble(-10, 10);
    };
  }
}
