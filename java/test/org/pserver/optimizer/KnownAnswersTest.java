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

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.OptimizerConfig;

/**
 * Known answers for every optimizer and both policies, over every kernel implementation.
 *
 * <p>How the expected values were obtained: the SGD, Linear-policy and integer cases use dyadic
 * numbers (0.5, 0.25, ...) or integers, so every intermediate is exact in float32, float64 and
 * double; the sequences are worked out by hand in the comments and asserted exactly. For Adam,
 * Adagrad and Adadelta (square roots) the expected weights are literals printed by {@code
 * known_answers.py} (next to this file; Python floats and the spec's formulas, sharing nothing
 * with pserver's code). Its float32 values follow the seed's arithmetic (double, rounded to float32
 * on every assignment) while the kernels compute float32 in float, so they are compared within
 * {@value #F32_TOL} (2 to 4 float ulps at magnitude 0.5 to 2; 1 to 2 are seen after three steps);
 * float64 within {@value #F64_TOL} (a few double ulps: the operations are the same, their order
 * differs in places). The spec's own worked values (4.6) are checked too.
 */
class KnownAnswersTest {
  static final double F32_TOL = 5e-7;
  static final double F64_TOL = 1e-15;
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
   * Linear policy with rates exact in binary: lr 1, a 0.125, b 0.25 gives 0.875, 0.75, 0.625, 0.5,
   * 0.375, 0.25, then the floor 0.25 (n = 7: max(0.125, 0.25)). Plain SGD with g = 1 from p = 8
   * moves by exactly the rate, in float32 as in float64.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void linearPolicyExactlyInBothFloatTypes(UpdateKernels k) {
    for (ElementType t : FLOATS) {
      expectSteps(create(k, t, sgd(linearLr(1, 0.125, 0.25), 0, 0, false), 8), new double[] {1},
          new double[] {7.125}, new double[] {6.375}, new double[] {5.75}, new double[] {5.25},
          new double[] {4.875}, new double[] {4.625}, new double[] {4.375}, new double[] {4.125});
    }
  }

  // ---- Adam, Adagrad, Adadelta: literal values from known_answers.py (see the class comment) ----
  // Every case: p = [1, -0.5, 2], the same gradient g = [0.1, -0.2, 0.3] at every step (both
  // rounded to float32 for FLOAT32), weights after steps 1, 2 and 3.

  static final double[] P0 = {1, -0.5, 2};
  static final double[] G = {0.1, -0.2, 0.3};

  /** Applies {@link #G} once per row and compares the weights with it (F32_TOL / F64_TOL). */
  private static void expectRows(ParameterOptimizer o, double[][] rows) {
    double tol = o.type() == ElementType.FLOAT32 ? F32_TOL : F64_TOL;
    for (int s = 0; s < rows.length; s++) {
      o.update(o.type(), le(o.type(), G));
      assertArrayEquals(rows[s], Io.weights(o), tol, o.type() + " step " + (s + 1));
      assertEquals(s + 1, o.step());
    }
  }

  /**
   * Adam, lr 0.01, beta1 0.9, beta2 0.999, epsilon 1e-8, decay 0.1: lr_t = lr sqrt(1 - 0.999^t) /
   * (1 - 0.9^t); m = 0.9m + 0.1g; v = 0.999v + 0.001g^2; p -= lr_t (m / sqrt(v + eps) + 0.1p).
   * With a constant gradient each step moves p by about 0.01 against sign(g), plus the decay term
   * (about 0.0032, 0.0024, 0.0020 p for t = 1..3).
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adamSteps(UpdateKernels k) {
    OptimizerConfig.Builder c = adam(constLr(0.01), 0.9, 0.999, 1e-8, 0.1);
    expectRows(create(k, ElementType.FLOAT32, c, P0), new double[][] {
      {0.989688754, -0.48984313, 1.98936808},
      {0.979458392, -0.47972849, 1.97890019},
      {0.969262183, -0.469632, 1.96850061}});
    expectRows(create(k, ElementType.FLOAT64, c, P0), new double[][] {
      {0.9896887684871054, -0.4898431358826654, 1.9893680999772299},
      {0.9794583784795898, -0.47972849285401553, 1.9789002462956233},
      {0.9692621854244466, -0.46963199967208485, 1.9685006728399368}});
  }

  /**
   * Adam as above under the Linear policy: lr(n) = max(0.01 - 0.001 n, 0.0075), so 0.009, 0.008,
   * then the floor 0.0075; the bias correction multiplies the policy's rate of the same step.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adamStepsLinearPolicy(UpdateKernels k) {
    OptimizerConfig.Builder c = adam(linearLr(0.01, 0.001, 0.0075), 0.9, 0.999, 1e-8, 0.1);
    expectRows(create(k, ElementType.FLOAT32, c, P0), new double[][] {
      {0.990719914, -0.490858823, 1.99043131},
      {0.982535422, -0.482766926, 1.98205686},
      {0.974887788, -0.475194097, 1.97425675}});
    expectRows(create(k, ElementType.FLOAT64, c, P0), new double[][] {
      {0.9907198916383949, -0.49085882229439887, 1.990431289979507},
      {0.9825353855199638, -0.48276691666507865, 1.9820568068851099},
      {0.9748877745375835, -0.47519408643327365, 1.9742566485493271}});
  }

  /**
   * Adagrad, lr 0.1, epsilon 1e-6: A = A + g^2; p -= 0.1 g / sqrt(A + eps) + 0.1 decay p. With
   * decay 0 step t moves p by about 0.1 sign(g) / sqrt(t), descending (0.1, 0.0707, 0.0577);
   * decay 0.5 adds -0.05 p per step.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adagradSteps(UpdateKernels k) {
    expectRows(create(k, ElementType.FLOAT32, adagrad(constLr(0.1), 1e-6, 0), P0), new double[][] {
      {0.900004983, -0.400001258, 1.90000057},
      {0.829296052, -0.329291016, 1.82929003},
      {0.77156198, -0.271556228, 1.77155507}});
    expectRows(create(k, ElementType.FLOAT64, adagrad(constLr(0.1), 1e-6, 0), P0), new double[][] {
      {0.9000049996250312, -0.400001249976563, 1.900000555550926},
      {0.8292960892070409, -0.3292910137955033, 1.8292900738500033},
      {0.7715620245144714, -0.2715562274376494, 1.7715551538474603}});
    expectRows(create(k, ElementType.FLOAT32, adagrad(constLr(0.1), 1e-6, 0.5), P0), new double[][] {
      {0.850005031, -0.375001252, 1.80000055},
      {0.736795843, -0.285540968, 1.63929009},
      {0.642221987, -0.21352914, 1.49959064}});
    expectRows(create(k, ElementType.FLOAT64, adagrad(constLr(0.1), 1e-6, 0.5), P0), new double[][] {
      {0.8500049996250312, -0.375001249976563, 1.800000555550926},
      {0.7367958392257893, -0.2855409512966751, 1.6392900460724569},
      {0.6422219825719303, -0.21352911737398744, 1.499590623766291}});
  }

  /**
   * Adadelta, lr 1 (classic), rho 0.9, epsilon 1e-6, decay 0.1: Eg = 0.9Eg + 0.1g^2; U = sqrt(Ed
   * + eps) / sqrt(Eg + eps) g; Ed = 0.9Ed + 0.1U^2; p -= lr U + lr 0.1 p. The gradient's own steps
   * are tiny at first (Ed starts at 0: about 0.003 sign(g)); the decay term dominates.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void adadeltaSteps(UpdateKernels k) {
    OptimizerConfig.Builder c = adadelta(constLr(1), 0.9, 1e-6, 0.1);
    expectRows(create(k, ElementType.FLOAT32, c, P0), new double[][] {
      {0.896839321, -0.446838111, 1.79683793},
      {0.80391264, -0.398910284, 1.61390984},
      {0.720222294, -0.355718881, 1.44921827}});
    expectRows(create(k, ElementType.FLOAT64, c, P0), new double[][] {
      {0.8968393022937949, -0.4468381175504387, 1.796837898007285},
      {0.8039126072867177, -0.3989102935200487, 1.6139098647577246},
      {0.7202222553049197, -0.35571888718617156, 1.4492182630415753}});
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
    ByteBuffer w = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
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

  /**
   * uint32 and uint64 beyond plain SGD, worked by hand (and checked with known_answers.py): the
   * step in double, p + s rounded half to even, saturated at 0 and at the type's maximum, exact
   * beyond 2^53 for uint64.
   */
  @ParameterizedTest
  @MethodSource("kernels")
  void unsignedIntegersBeyondSgd(UpdateKernels k) {
    // uint32 Adagrad lr 2, g = 3: A = 9, 18, 27, s = -6 / sqrt(A + 1e-6) = -2.0000, -1.4142,
    // -1.1547: 10 -> 8, 8 - 1.414 = 6.586 -> 7, 7 - 1.155 = 5.845 -> 6; 1 - 2 saturates at 0
    ParameterOptimizer o = create(k, ElementType.UINT32, adagrad(constLr(2), 1e-6, 0), 10, 1);
    expectSteps(o, new double[] {3, 3},
        new double[] {8, 0}, new double[] {7, 0}, new double[] {6, 0});
    // uint32 Adadelta lr 1000, rho 0.9, eps 1e-6, g = 1: Eg = 0.1, 0.19, 0.271; Ed = 0.9Ed + 0.1U^2;
    // U = sqrt(Ed + eps) / sqrt(Eg + eps) = 3.1623e-3, 3.2444e-3, 3.3008e-3; s = -1000 U:
    // 100 - 3.162 = 96.84 -> 97, 97 - 3.244 = 93.76 -> 94, 94 - 3.301 = 90.70 -> 91; 3 -> 0
    o = create(k, ElementType.UINT32, adadelta(constLr(1000), 0.9, 1e-6, 0), 100, 3);
    expectSteps(o, new double[] {1, 1},
        new double[] {97, 0}, new double[] {94, 0}, new double[] {91, 0});
    // uint64 Adam lr 0.7, g = 5: lr_t m / sqrt(v) = 0.7 exactly but for epsilon, so s is just above
    // -0.7 and each step takes one unit, exactly even above 2^63: 2^63 + 1 -> 2^63 -> 2^63 - 1
    ElementType u64 = ElementType.UINT64;
    long top = Long.MIN_VALUE + 1; // 2^63 + 1 as unsigned
    o = ParameterOptimizer.create(u64, le(u64, 0, 10, 1).putLong(0, top),
        adam(constLr(0.7), 0.9, 0.999, 1e-8, 0).build().toByteArray(), k);
    for (long[] want : new long[][] {{top - 1, 9, 0}, {top - 2, 8, 0}, {top - 3, 7, 0}}) {
      o.update(u64, le(u64, 5, 5, 5));
      assertArrayEquals(want, longs(o), "uint64 adam step " + o.step());
    }
    // uint64 Nesterov 0.5, lr 1: g = 1 gives m = -1, -1.5, -1.75 and s = 0.5m - 1 = -1.5, -1.75,
    // -1.875: 10 - 1.5 = 8.5 -> 8 (half to even), 8 - 1.75 = 6.25 -> 6, 6 - 1.875 = 4.125 -> 4.
    // g = 2^64 - 1 (as a double 2^64) from 2^64 - 2: s = -1.5 * 2^64, saturates at 0 and stays
    o = ParameterOptimizer.create(u64, le(u64, 10, 0).putLong(8, -2L),
        sgd(constLr(1), 0.5, 0, true).build().toByteArray(), k);
    for (long[] want : new long[][] {{8, 0}, {6, 0}, {4, 0}}) {
      o.update(u64, le(u64, 1, 0).putLong(8, -1L));
      assertArrayEquals(want, longs(o), "uint64 nesterov step " + o.step());
    }
  }

  /** The weights of a 64-bit integer parameter as raw longs (unsigned values above 2^63 negative). */
  private static long[] longs(ParameterOptimizer o) {
    ByteBuffer b = ByteBuffer.allocate(o.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
    o.copyWeightsTo(b);
    long[] v = new long[o.elements()];
    b.flip().asLongBuffer().get(v);
    return v;
  }

  /** Integer types against the double reference: the same operations, so exactly equal. */
  @ParameterizedTest
  @MethodSource("kernels")
  void integerTypesMatchTheDoubleReferenceExactly(UpdateKernels k) {
    for (Fixtures.Named a : Fixtures.algorithms()) {
      OptimizerConfig c = a.config().toBuilder().setConstLr(
          org.pserver.proto.paddle.ConstLrConfig.newBuilder().setLearningRate(3)).build();
      for (ElementType t : new ElementType[] {
          ElementType.INT32, ElementType.INT64, ElementType.UINT32, ElementType.UINT64}) {
        // unsigned types: no negative weights or gradients (they would not be the same numbers);
        // the weights then fall and saturate at 0
        boolean unsigned = t == ElementType.UINT32 || t == ElementType.UINT64;
        double[] p = {100, unsigned ? 50 : -50, 7, 0, 1000};
        ParameterOptimizer o = ParameterOptimizer.create(t, le(t, p), c.toByteArray(), k);
        ReferenceOptimizer r = new ReferenceOptimizer(t, c, p);
        for (int s = 0; s < 10; s++) {
          double[] g = {s - 4, 3, -2 * s, 1, s % 3};
          if (unsigned) {
            for (int i = 0; i < g.length; i++) {
              g[i] = Math.abs(g[i]);
            }
          }
          o.update(t, le(t, g));
          r.update(g);
          assertArrayEquals(r.p, Io.weights(o), 0, a + " " + t + " step " + (s + 1));
        }
      }
    }
  }
}
