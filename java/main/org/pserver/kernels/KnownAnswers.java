package org.pserver.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.pserver.ElementType;

/**
 * The self-test a kernels implementation must pass before pserver uses it.
 *
 * <ol>
 *   <li>Known answers: the worked float32 values of the spec (section 4.6) for one step of SGD,
 *       Nesterov, Adam and Adadelta on {@code p = g = [0, 1, 2, 3, 4]}, and the descending Adagrad
 *       (the spec's value ascends; ours is computed here in double). Kernels run in float32, the
 *       spec's values carry double intermediates: a few ulps apart.
 *   <li>Agreement: every kernel on every element type, on a fixed pseudo-random input of an odd
 *       length and offset, must give exactly the bits {@link JavaKernels} gives.
 * </ol>
 */
final class KnownAnswers {
  private static final int ULPS = 4;

  private KnownAnswers() {}

  /**
   * Runs both checks.
   *
   * @throws IllegalStateException naming the first kernel, type and element that disagree
   */
  static void check(UpdateKernels k) {
    knownAnswers(k);
    if (!(k instanceof JavaKernels)) {
      agreement(k, Kernels.java());
    }
  }

  /**
   * The known-answer half of {@link #check}, alone: for a test that feeds it wrong kernels (the
   * agreement half would catch most of them first).
   */
  static void knownAnswers(UpdateKernels k) {
    ElementType f = ElementType.FLOAT32;
    float[] start = {0, 1, 2, 3, 4};

    ByteBuffer p = floats(start), g = floats(start);
    k.sgd(f, p, g, null, 0, 5, 0.1, 0, 0, false, 1, 0);
    expect(k, "sgd", p, new double[] {0, 0.9, 1.8, 2.7, 3.6});

    p = floats(start);
    k.sgd(f, p, g, floats(new float[5]), 0, 5, 0.1, 0.9, 0, true, 1, 0);
    expect(k, "sgd nesterov", p, new double[] {0, 0.81, 1.62, 2.43, 3.24});

    p = floats(start);
    double lrT = 0.1 * Math.sqrt(1 - 0.1) / (1 - 0.9);
    k.adam(f, p, g, floats(new float[5]), floats(new float[5]), 0, 5, lrT, 0.9, 0.1, 1e-3, 0, 1, 0);
    expect(k, "adam", p, new double[] {0, 0.90005553, 1.90001392, 2.90000606, 3.90000343});

    p = floats(start);
    k.adagrad(f, p, g, floats(new float[5]), 0, 5, 0.1, 1e-5, 0, 1, 0);
    double[] adagrad = new double[5];
    for (int i = 0; i < 5; i++) {
      adagrad[i] = start[i] - 0.1 * start[i] / Math.sqrt((double) start[i] * start[i] + 1e-5);
    }
    expect(k, "adagrad", p, adagrad);

    p = floats(start);
    k.adadelta(
        f, p, g, floats(new float[5]), floats(new float[5]), floats(new float[5]), 0, 5, 1.0, 0.9,
        1e-5, 0, 1, 0);
    expect(k, "adadelta", p, new double[] {0, 0.99000049, 1.99000013, 2.99000001, 3.99000001});
  }

  private static void expect(UpdateKernels k, String what, ByteBuffer p, double[] want) {
    for (int i = 0; i < want.length; i++) {
      float got = p.getFloat(4 * i);
      float w = (float) want[i];
      // Written as "not within" so that a NaN (or infinite) result fails: NaN > tol is false.
      if (!(Math.abs(got - w) <= ULPS * Math.ulp(Math.max(Math.abs(w), Float.MIN_NORMAL)))) {
        throw new IllegalStateException(
            k.name() + " self-test: " + what + " element " + i + " is " + got + ", expected " + w);
      }
    }
  }

  private static void agreement(UpdateKernels k, UpdateKernels ref) {
    int off = 3, len = 37, cap = off + len + 2;
    for (ElementType t : ElementType.values()) {
      SplittableRandom rnd = new SplittableRandom(0x5eed + t.code());
      ByteBuffer p = random(t, cap, rnd), g = random(t, cap, rnd);
      ByteBuffer[] s = new ByteBuffer[3];
      for (int i = 0; i < 3; i++) {
        s[i] = direct(cap * t.stateSize());
        for (int j = 0; j < cap; j++) {
          if (t.stateSize() == 4) {
            s[i].putFloat(4 * j, (float) rnd.nextDouble());
          } else {
            s[i].putDouble(8 * j, rnd.nextDouble());
          }
        }
      }
      for (int op = 0; op < 7; op++) {
        ByteBuffer[] a = copies(p, g, s), b = copies(p, g, s);
        run(k, op, t, a, off, len);
        run(ref, op, t, b, off, len);
        for (int i = 0; i < a.length; i++) {
          if (!a[i].equals(b[i])) {
            throw new IllegalStateException(
                k.name() + " self-test: kernel #" + op + " on " + t + " differs from the Java kernels");
          }
        }
      }
      for (double scale : new double[] {1, 0x1p-600}) {
        double x = k.sumOfSquares(t, g, off, len, 0.5, scale);
        double y = ref.sumOfSquares(t, g, off, len, 0.5, scale);
        if (Double.doubleToLongBits(x) != Double.doubleToLongBits(y)) {
          throw new IllegalStateException(
              k.name() + " self-test: sumOfSquares on " + t + " (scale " + scale + ") differs");
        }
      }
    }
  }

  private static void run(UpdateKernels k, int op, ElementType t, ByteBuffer[] b, int off, int len) {
    switch (op) {
      case 0 -> k.sgd(t, b[0], b[1], b[2], off, len, 0.05, 0.9, 0.01, false, 0.7, 0.8);
      case 1 -> k.sgd(t, b[0], b[1], null, off, len, 0.3, 0, 0.02, true, 1, 0);
      case 2 -> k.adam(t, b[0], b[1], b[2], b[3], off, len, 0.01, 0.9, 0.999, 1e-8, 0.01, 1, 0);
      case 3 -> k.adagrad(t, b[0], b[1], b[2], off, len, 0.1, 1e-6, 0.001, 1.5, 0.9);
      case 4 -> k.adadelta(t, b[0], b[1], b[2], b[3], b[4], off, len, 1.0, 0.95, 1e-6, 0.0, 1, 0);
      case 5 -> k.accumulate(t, b[0], b[1], off, len, -1.25);
      case 6 -> k.assign(t, b[0], b[1], off, len);
      default -> throw new AssertionError(op);
    }
  }

  private static ByteBuffer[] copies(ByteBuffer p, ByteBuffer g, ByteBuffer[] s) {
    return new ByteBuffer[] {copy(p), copy(g), copy(s[0]), copy(s[1]), copy(s[2])};
  }

  private static ByteBuffer random(ElementType t, int n, SplittableRandom rnd) {
    ByteBuffer b = direct(n * t.size());
    for (int i = 0; i < n; i++) {
      double x = rnd.nextDouble(-100, 100);
      switch (t) {
        case FLOAT32 -> b.putFloat(4 * i, (float) x);
        case FLOAT64 -> b.putDouble(8 * i, x);
        case INT32, UINT32 -> b.putInt(4 * i, (int) (t == ElementType.INT32 ? x : Math.abs(x)));
        case INT64, UINT64 -> b.putLong(8 * i, (long) (t == ElementType.INT64 ? x : Math.abs(x)));
      }
    }
    return b;
  }

  private static ByteBuffer floats(float[] v) {
    ByteBuffer b = direct(4 * v.length);
    for (int i = 0; i < v.length; i++) {
      b.putFloat(4 * i, v[i]);
    }
    return b;
  }

  private static ByteBuffer copy(ByteBuffer b) {
    ByteBuffer c = direct(b.capacity());
    c.put(0, b, 0, b.capacity());
    return c;
  }

  private static ByteBuffer direct(int bytes) {
    return ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
  }
}
