package org.pserver.optimizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.opentest4j.AssertionFailedError;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.ConstLrConfig;
import org.pserver.proto.paddle.LinearLrConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.proto.paddle.OptimizerConfig.LrPolicy;

/**
 * 100 updates of every algorithm, with no clipping, clip_value, clip_norm and both, under the
 * Const and the Linear policy, on float32 and float64, through every kernel implementation,
 * compared after every step with {@link ReferenceOptimizer} (plain double arithmetic).
 *
 * <p>Inputs: 67 weights (not a multiple of any SIMD width) uniform in [-1, 1], gradients uniform in
 * [-1, 1] from a fixed seed, rounded to the element type before both sides see them; step 50's
 * gradient is all zeros (norm clipping must not divide by zero). clip_value 0.5 and clip_norm 2
 * are both active for most steps (the norm of 67 such elements is about 4.7). The Linear policy
 * (lr 0.1 falling by 0.001 per step to 0.02) reaches its floor at step 80.
 *
 * <p>Tolerances, on |kernel - reference| per weight, after every step:
 *
 * <ul>
 *   <li>float64: none (bit-identical) without clip_norm: the kernels do the reference's
 *       operations in the same order. With clip_norm, {@value #F64_TOL}: the kernels sum the
 *       squares in eight interleaved partial sums, which can change the scale factor in its last
 *       bit.
 *   <li>float32: {@value #F32_TOL}. The kernels store float32 and also compute in float (about
 *       6e-8 relative rounding per operation, a dozen operations per step); over 100 steps these
 *       errors add up, and Adam/Adagrad/Adadelta divide by square roots of small accumulators,
 *       which amplifies them. The largest difference observed over all cases is about 2.5e-6
 *       (logged after the run); the tolerance leaves a margin of 4x while still catching any
 *       wrong coefficient, sign or step (which move weights by 1e-3 or more).
 * </ul>
 */
class ReferenceComparisonTest {
  static final double F64_TOL = 1e-12;
  static final double F32_TOL = 1e-5;
  static final int STEPS = 100;
  static final int N = 67;

  /** The largest float32 difference seen in this run, logged at the end. */
  static volatile double observedFloat32Error;

  record Clip(String name, double value, double norm) {}

  static final List<Clip> CLIPS = List.of(
      new Clip("no clip", 0, 0),
      new Clip("clip_value", 0.5, 0),
      new Clip("clip_norm", 0, 2),
      new Clip("both clips", 0.5, 2));

  @TestFactory
  Stream<DynamicTest> hundredStepsAgainstTheDoubleReference() {
    List<DynamicTest> tests = new ArrayList<>();
    for (UpdateKernels k : Fixtures.kernels()) {
      for (Fixtures.Named a : Fixtures.algorithms()) {
        for (Clip clip : CLIPS) {
          for (LrPolicy policy : LrPolicy.values()) {
            for (ElementType t : new ElementType[] {ElementType.FLOAT32, ElementType.FLOAT64}) {
              OptimizerConfig c = config(a.config(), policy, clip);
              String name = k.name() + " " + a + " " + clip.name() + " " + policy + " " + t;
              tests.add(DynamicTest.dynamicTest(name, () -> compare(k, t, c)));
            }
          }
        }
      }
    }
    return tests.stream();
  }

  static OptimizerConfig config(OptimizerConfig base, LrPolicy policy, Clip clip) {
    double lr = base.getConstLr().getLearningRate();
    OptimizerConfig.Builder b = base.toBuilder().setClipValue(clip.value()).setClipNorm(clip.norm());
    if (policy == LrPolicy.Linear) {
      b.clearConstLr().setLrPolicy(LrPolicy.Linear).setLinearLr(LinearLrConfig.newBuilder()
          .setLearningRate(lr).setLrDecayA(lr / 100).setLrDecayB(lr / 5));
    } else {
      b.setConstLr(ConstLrConfig.newBuilder().setLearningRate(lr));
    }
    return b.build();
  }

  private static void compare(UpdateKernels k, ElementType t, OptimizerConfig c) {
    SplittableRandom rnd = new SplittableRandom(42);
    double[] p = uniform(rnd, t);
    ParameterOptimizer o = ParameterOptimizer.create(t, Fixtures.le(t, p), c.toByteArray(), k);
    ReferenceOptimizer r = new ReferenceOptimizer(t, c, p);
    double tol = t == ElementType.FLOAT32 ? F32_TOL : c.getClipNorm() > 0 ? F64_TOL : 0;
    double worst = 0;
    for (int step = 1; step <= STEPS; step++) {
      double[] g = step == 50 ? new double[N] : uniform(rnd, t);
      o.update(t, Fixtures.leDirect(t, g));
      r.update(g);
      double[] got = Io.weights(o);
      for (int i = 0; i < N; i++) {
        assertTrue(Double.isFinite(got[i]), "step " + step + " weight " + i + " is " + got[i]);
        assertWithin(r.p[i], got[i], tol, step, i);
        worst = Math.max(worst, Math.abs(got[i] - r.p[i]));
      }
    }
    assertEquals(STEPS, o.step());
    if (t == ElementType.FLOAT32) {
      observedFloat32Error = Math.max(observedFloat32Error, worst);
    }
  }

  /**
   * Fails unless {@code |got - want| <= tol}. Written as "not within", so that a NaN on either side
   * fails too ({@code NaN > tol} is false); the message is built only on failure.
   */
  static void assertWithin(double want, double got, double tol, int step, int weight) {
    if (!(Math.abs(got - want) <= tol)) {
      fail("step " + step + " weight " + weight + ": expected " + want + " (reference), got "
          + got + ", tolerance " + tol);
    }
  }

  /** A reference that went NaN must fail the comparison, not skip it. */
  @Test
  void aNaNReferenceFails() {
    assertThrows(AssertionFailedError.class, () -> assertWithin(Double.NaN, 0.5, F32_TOL, 1, 0));
    assertThrows(AssertionFailedError.class, () -> assertWithin(0.5, Double.NaN, F32_TOL, 1, 0));
    assertThrows(AssertionFailedError.class, () -> assertWithin(0.5, 0.5 + 2 * F32_TOL, F32_TOL, 1, 0));
    assertWithin(0.5, 0.5 + F32_TOL / 2, F32_TOL, 1, 0);
    assertWithin(0.5, 0.5, 0, 1, 0);
  }

  private static double[] uniform(SplittableRandom rnd, ElementType t) {
    double[] v = new double[N];
    for (int i = 0; i < N; i++) {
      double x = rnd.nextDouble(-1, 1);
      v[i] = t == ElementType.FLOAT32 ? (float) x : x;
    }
    return v;
  }

  @org.junit.jupiter.api.AfterAll
  static void report() {
    org.slf4j.LoggerFactory.getLogger(ReferenceComparisonTest.class)
        .info("largest float32 difference from the double reference: {}", observedFloat32Error);
  }
}
