package org.pserver.optimizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.pserver.optimizer.Fixtures.adadelta;
import static org.pserver.optimizer.Fixtures.adagrad;
import static org.pserver.optimizer.Fixtures.adam;
import static org.pserver.optimizer.Fixtures.constLr;
import static org.pserver.optimizer.Fixtures.le;
import static org.pserver.optimizer.Fixtures.linearLr;
import static org.pserver.optimizer.Fixtures.sgd;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.OptimizerConfig;

/**
 * Known answers for every optimizer and both policies, over every kernel implementation.
 *
 * <p>How the expected values were obtained: the SGD and integer cases use dyadic numbers (0.5,
 * 0.25, ...) or integers, so every intermediate is exact in float32, float64 and double; the
 * sequences are worked out by hand in the comments and asserted exactly. For Adam, Adagrad and
 * Adadelta (square roots), the expected values are computed below with the spec's scalar formulas
 * in plain double arithmetic, from the same (float32-rounded, for FLOAT32) inputs, and compared
 * within {@value #F32_TOL} for float32 (a few float ulps at magnitude 1 after three steps) and
 * {@value #F64_TOL} for float64. The spec's own worked values (4.6) are checked too.
 */
class KnownAnswersTest {
  static final double F32_TOL = 1e-6;
  static final double F64_TOL = 1e-14;
  static final ElementType[] FLOATS = {ElementType.FLOAT32, ElementType.FLOAT64};

  static Iterable<UpdateKernels> kernels() {
    return Fixtures.kernels();
  }

  private static ParameterOptimizer create(
      UpdateKernels k, ElementType t, OptimizerConfig.Builder c, double... p) {
    return ParameterOptimizer.create(t, le(t, p), c.build().toByteArray(), k);
  }

  /** Applies {@code g} once per expected row and checks the weights after each step exactly. */
  private static void expectSteps(ParameterOptimizer o, double[] g, double[]... rows) {
    for (int s = 0; s < rows.length; s++) {
      o.update(o.type(), le(o.type(), g));
      assertArrayEquals(rows[s], Io.weights(o), o.type() + " step " + (s + 1));
      assertEquals(s + 1, o.step());
    }
  }

  private static void assertClose(double[] want, double[] got, ElementType t, String what) {
    double tol = t == ElementType.FLOAT32 ? F32_TOL : F64_TOL;
    assertArrayEquals(want, got, tol, t + " " + what);
  }

  /** {@code x} as the element type holds it: float32-rounded for FLOAT32. */
  private static double in(ElementType t, double x) {
    return t == ElementType.FLOAT32 ? (float) x : x;
  }

  /** Spec 4.6 worked values: p = g = [0,1,2,3,4], one update, float32 (printed to 8 digits). */
  @ParameterizedTest
  @MethodSource("kernels")
  void specWorkedValues(UpdateKernels k) {
    ElementType t = ElementType.FLOAT32;
    double[] x = {0, 1, 2, 3, 4};
    record Case(OptimizerConfig.Builder config, double[] want) {}
    Case[] cases = {
      new Case(sgd(constLr(0.1), 0, 0, false), new double[] {0, 0.89999998, 1.79999995, 2.70000005, 3.5999999}),
      new Case(sgd(constLr(0.1), 0.9, 0, false), new double[] {0, 0.9, 1.8, 2.7, 3.6}),
      new Case(sgd(constLr(0.1), 0.9, 0, true), new double[] {0, 0.81, 1.62, 2.43, 3.24}),
      new Case(adam(constLr(0.1), 0.9, 0.1, 1e-3, 0), new double[] {0, 0.90005553, 1.90001392, 2.90000606, 3.90000343}),
      new Case(adadelta(constLr(1.0), 0.9, 1e-5, 0), new double[] {0, 0.99000049, 1.99000013, 2.99000001, 3.99000001}),
      // The spec's Adagrad values (1.09999955, 2.0999999, ...) ascend; pserver descends by as much.
      new Case(adagrad(constLr(0.1), 1e-5, 0), new double[] {0, 1 - 0.09999955, 2 - 0.0999999, 3 - 0.0999999, 4 - 0.0999999}),
    };
    for (Case c : cases) {
      ParameterOptimizer o = create(k, t, c.config(), x);
      o.update(t, le(t, x));
      assertArrayEquals(c.want(), Io.weights(o), 2e-7, c.config().getOptimizer().toString());
    }
  }

  /**
   * SGD variants, lr 0.5, from p = 1 with a constant gradient g = 0.5 (and -p, -g in a second
   * element, which must mirror). Every value is exact in float32 and float64.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void sgdVariantsExactly(UpdateKernels k) {
    double[] g = {0.5, -0.5};
    for (ElementType t : FLOATS) {
      // plain: p -= 0.5 * 0.5 each step
      expectSteps(create(k, t, sgd(constLr(0.5), 0, 0, false), 1, -1), g,
          row(0.75), row(0.5), row(0.25));
      // momentum 0.5: m = 0.5m - 0.25 -> -0.25, -0.375, -0.4375; p += m
      expectSteps(create(k, t, sgd(constLr(0.5), 0.5, 0, false), 1, -1), g,
          row(0.75), row(0.375), row(-0.0625));
      // Nesterov 0.5: m as above; p += 0.5m - 0.25 -> -0.375, -0.4375, -0.46875
      expectSteps(create(k, t, sgd(constLr(0.5), 0.5, 0, true), 1, -1), g,
          row(0.625), row(0.1875), row(-0.28125));
      // decay 0.5: p += -0.25 - 0.25p -> -0.5, -0.375, -0.28125
      expectSteps(create(k, t, sgd(constLr(0.5), 0, 0.5, false), 1, -1), g,
          row(0.5), row(0.125), row(-0.15625));
      // Nesterov with momentum 0 keeps the decay (the seed gave 0.75, 0.5, 0.25 here)
      expectSteps(create(k, t, sgd(constLr(0.5), 0, 0.5, true), 1, -1), g,
          row(0.5), row(0.125), row(-0.15625));
      // Nesterov 0.5 with decay 0.5: m = 0.5m - 0.25 - 0.25p; p += 0.5m - 0.25 - 0.25p
      //   step 1: m = -0.5,    p = 1 - 0.25 - 0.25 - 0.25 = 0.25
      //   step 2: m = -0.25 - 0.25 - 0.0625 = -0.5625, p = 0.25 - 0.28125 - 0.25 - 0.0625
      expectSteps(create(k, t, sgd(constLr(0.5), 0.5, 0.5, true), 1, -1), g,
          row(0.25), row(-0.34375));
    }
  }

  private static double[] row(double p) {
    return new double[] {p, -p};
  }

  /**
   * Linear policy (spec 4.5: lr 1.0, a 0.1, b 0.05 gives 0.9 at n = 1, 0.5 at n = 5, 0.05 from
   * n = 10): plain SGD with g = 1 moves the weight by exactly the rate of each step.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void linearPolicyRatePerStep(UpdateKernels k) {
    ElementType t = ElementType.FLOAT64;
    ParameterOptimizer o = create(k, t, sgd(linearLr(1.0, 0.1, 0.05), 0, 0, false), 100);
    double p = 100;
    for (int n = 1; n <= 12; n++) {
      o.update(t, le(t, 1));
      double rate = Math.max(1.0 - 0.1 * n, 0.05);
      p -= rate;
      assertEquals(p, Io.weights(o)[0], 0, "step " + n);
    }
    assertEquals(100 - (0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 0.4 + 0.3 + 0.2 + 0.1) - 3 * 0.05,
        Io.weights(o)[0], 1e-12);
  }

  /**
   * Adam, lr 0.01, beta1 0.9, beta2 0.999, epsilon 1e-8, decay 0.1, constant gradient, 3 steps:
   * lr_t = lr sqrt(1 - 0.999^t) / (1 - 0.9^t); m = 0.9m + 0.1g; v = 0.999v + 0.001g^2;
   * p -= lr_t (m / sqrt(v + eps) + 0.1p). With a constant gradient m/sqrt(v) times the
   * correction is sign(g), so each step moves p by about 0.01 (plus the decay term).
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adamSteps(UpdateKernels k) {
    for (ElementType t : FLOATS) {
      double[] p = {in(t, 1), in(t, -0.5), in(t, 2)};
      double[] g = {in(t, 0.1), in(t, -0.2), in(t, 0.3)};
      double[] m = new double[3];
      double[] v = new double[3];
      ParameterOptimizer o = create(k, t, adam(constLr(0.01), 0.9, 0.999, 1e-8, 0.1), p);
      for (int n = 1; n <= 3; n++) {
        double lrT = 0.01 * Math.sqrt(1 - Math.pow(0.999, n)) / (1 - Math.pow(0.9, n));
        for (int i = 0; i < 3; i++) {
          m[i] = 0.9 * m[i] + 0.1 * g[i];
          v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
          p[i] -= lrT * (m[i] / Math.sqrt(v[i] + 1e-8) + 0.1 * p[i]);
        }
        o.update(t, le(t, g));
        assertClose(p, Io.weights(o), t, "adam step " + n);
      }
      // about 0.01 per step towards -sign(g); the decay term is scaled by lr_t (about 0.0032,
      // 0.0024, 0.0020 for t = 1..3), so it takes about 0.00075 p over the three steps
      assertArrayEquals(new double[] {0.96925, -0.469625, 1.9685}, Io.weights(o), 1e-4);
    }
  }

  /**
   * Adagrad, lr 0.1, epsilon 1e-6, 3 steps with a constant gradient: A = t g^2, so step t moves p
   * by about -0.1 sign(g) / sqrt(t), descending. A second run adds decay 0.5: -0.05 p per step.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adagradSteps(UpdateKernels k) {
    for (ElementType t : FLOATS) {
      for (double decay : new double[] {0, 0.5}) {
        double[] p = {in(t, 1), in(t, -0.5), in(t, 2)};
        double[] g = {in(t, 0.1), in(t, -0.2), in(t, 0.3)};
        double[] a = new double[3];
        ParameterOptimizer o = create(k, t, adagrad(constLr(0.1), 1e-6, decay), p);
        for (int n = 1; n <= 3; n++) {
          for (int i = 0; i < 3; i++) {
            a[i] += g[i] * g[i];
            p[i] -= 0.1 * g[i] / Math.sqrt(a[i] + 1e-6) + 0.1 * decay * p[i];
          }
          o.update(t, le(t, g));
          assertClose(p, Io.weights(o), t, "adagrad decay " + decay + " step " + n);
        }
        if (decay == 0) {
          double moved = 0.1 * (1 + 1 / Math.sqrt(2) + 1 / Math.sqrt(3));
          assertArrayEquals(new double[] {1 - moved, -0.5 + moved, 2 - moved}, Io.weights(o), 1e-4);
        }
      }
    }
  }

  /**
   * Adadelta, lr 1 (classic), rho 0.9, epsilon 1e-6, decay 0.1, 3 steps:
   * Eg = 0.9Eg + 0.1g^2; U = sqrt(Ed + eps) / sqrt(Eg + eps) g; Ed = 0.9Ed + 0.1U^2;
   * p -= lr U + lr 0.1 p. The first steps are tiny (Ed starts at 0), as Adadelta's are.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adadeltaSteps(UpdateKernels k) {
    for (ElementType t : FLOATS) {
      double[] p = {in(t, 1), in(t, -0.5), in(t, 2)};
      double[] g = {in(t, 0.1), in(t, -0.2), in(t, 0.3)};
      double[] eg = new double[3];
      double[] ed = new double[3];
      ParameterOptimizer o = create(k, t, adadelta(constLr(1), 0.9, 1e-6, 0.1), p);
      for (int n = 1; n <= 3; n++) {
        for (int i = 0; i < 3; i++) {
          eg[i] = 0.9 * eg[i] + 0.1 * g[i] * g[i];
          double u = Math.sqrt(ed[i] + 1e-6) / Math.sqrt(eg[i] + 1e-6) * g[i];
          ed[i] = 0.9 * ed[i] + 0.1 * u * u;
          p[i] -= u + 0.1 * p[i];
        }
        o.update(t, le(t, g));
        assertClose(p, Io.weights(o), t, "adadelta step " + n);
      }
    }
  }

  /** clip_value clips each element; clip_norm then scales the whole gradient. SGD lr 1. */
  @ParameterizedTest
  @MethodSource("kernels")
  void clipping(UpdateKernels k) {
    ElementType t = ElementType.FLOAT64;
    // clip_value 1: g [3, -0.5, -7] -> [1, -0.5, -1]
    ParameterOptimizer o = create(k, t, sgd(constLr(1), 0, 0, false).setClipValue(1), 0, 0, 0);
    expectSteps(o, new double[] {3, -0.5, -7}, new double[] {-1, 0.5, 1});
    // clip_norm 1: g [3, 4] has norm 5 -> [0.6, 0.8]
    o = create(k, t, sgd(constLr(1), 0, 0, false).setClipNorm(1), 0, 0);
    o.update(t, le(t, 3, 4));
    assertArrayEquals(new double[] {-0.6, -0.8}, Io.weights(o), 1e-15);
    // a norm below clip_norm is not scaled: [0.3, 0.4] has norm 0.5
    o = create(k, t, sgd(constLr(1), 0, 0, false).setClipNorm(1), 0, 0);
    expectSteps(o, new double[] {0.3, 0.4}, new double[] {-0.3, -0.4});
    // both: [10, -10, 0.5] -> [2, -2, 0.5] (norm sqrt(8.25)) -> scaled to norm 1
    o = create(k, t, sgd(constLr(1), 0, 0, false).setClipValue(2).setClipNorm(1), 0, 0, 0);
    o.update(t, le(t, 10, -10, 0.5));
    double norm = Math.sqrt(8.25);
    assertArrayEquals(new double[] {-2 / norm, 2 / norm, -0.5 / norm}, Io.weights(o), 1e-15);
    // a zero gradient with clip_norm: no 0/0, nothing moves
    for (ElementType ft : FLOATS) {
      o = create(k, ft, adam(constLr(1), 0.9, 0.999, 1e-8, 0).setClipNorm(1), 1, 2);
      expectSteps(o, new double[] {0, 0}, new double[] {1, 2}, new double[] {1, 2});
    }
  }

  /** Integer parameters: exact accumulation, saturation, rounding half to even. */
  @ParameterizedTest
  @MethodSource("kernels")
  void integers(UpdateKernels k) {
    // int32 SGD lr 1: p -= g exactly, saturating at Integer.MAX_VALUE instead of wrapping
    ParameterOptimizer o = create(k, ElementType.INT32, sgd(constLr(1), 0, 0, false), 10, -10, 2e9);
    expectSteps(o, new double[] {3, -4, -1e8},
        new double[] {7, -6, 2.1e9}, new double[] {4, -2, Integer.MAX_VALUE});
    // int64 beyond double's 53 bits: 2^60 + 1 - 5 * 1
    long big = (1L << 60) + 1;
    o = ParameterOptimizer.create(ElementType.INT64, Fixtures.le(ElementType.INT64, 0).putLong(0, big),
        sgd(constLr(1), 0, 0, false).build().toByteArray(), k);
    for (int i = 0; i < 5; i++) {
      o.update(ElementType.INT64, le(ElementType.INT64, 1));
    }
    java.nio.ByteBuffer w = java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    o.copyWeightsTo(w);
    assertEquals(big - 5, w.getLong(0));
    // uint32 saturates at 0 instead of wrapping: 5 - 3 = 2, 2 - 3 -> 0
    o = create(k, ElementType.UINT32, sgd(constLr(1), 0, 0, false), 5);
    expectSteps(o, new double[] {3}, new double[] {2}, new double[] {0});
    // int32 momentum 0.5, g = 1 (state in double): m = -1, -1.5, -1.75, -1.875;
    // p = 10 - 1 = 9; 9 - 1.5 = 7.5 -> 8 (half to even); 8 - 1.75 = 6.25 -> 6; 6 - 1.875 -> 4
    o = create(k, ElementType.INT32, sgd(constLr(1), 0.5, 0, false), 10);
    expectSteps(o, new double[] {1}, new double[] {9}, new double[] {8}, new double[] {6},
        new double[] {4});
    // int32 Adam, constant gradient: each step is about -lr; lr 0.7 rounds to one unit per step,
    // lr 0.4 rounds to no move at all
    o = create(k, ElementType.INT32, adam(constLr(0.7), 0.9, 0.999, 1e-8, 0), 10, -10);
    expectSteps(o, new double[] {5, -5}, new double[] {9, -9}, new double[] {8, -8},
        new double[] {7, -7});
    o = create(k, ElementType.INT32, adam(constLr(0.4), 0.9, 0.999, 1e-8, 0), 10, -10);
    expectSteps(o, new double[] {5, -5}, new double[] {10, -10}, new double[] {10, -10});
  }

  /** Integer types against the double reference: the same operations, so exactly equal. */
  @ParameterizedTest
  @MethodSource("kernels")
  void integerTypesMatchTheDoubleReferenceExactly(UpdateKernels k) {
    for (Fixtures.Named a : Fixtures.algorithms()) {
      OptimizerConfig c = a.config().toBuilder().setConstLr(
          org.pserver.proto.paddle.ConstLrConfig.newBuilder().setLearningRate(3)).build();
      for (ElementType t : new ElementType[] {ElementType.INT32, ElementType.INT64}) {
        double[] p = {100, -50, 7, 0, 1000};
        ParameterOptimizer o = ParameterOptimizer.create(t, le(t, p), c.toByteArray(), k);
        ReferenceOptimizer r = new ReferenceOptimizer(t, c, p);
        for (int s = 0; s < 10; s++) {
          double[] g = {s - 4, 3, -2 * s, 1, s % 3};
          o.update(t, le(t, g));
          r.update(g);
          assertArrayEquals(r.p, Io.weights(o), 0, a + " " + t + " step " + (s + 1));
        }
      }
    }
  }
}
