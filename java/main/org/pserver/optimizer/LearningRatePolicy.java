package org.pserver.optimizer;

import org.pserver.proto.paddle.OptimizerConfig.LrPolicy;

/**
 * A validated learning-rate policy (spec 4.5). {@code n} is the number of gradients applied
 * including the current one, so the first update uses {@code n = 1}.
 *
 * <ul>
 *   <li>{@code Const}: {@code rate(n) = learningRate}; {@code decayA} and {@code decayB} are 0.
 *   <li>{@code Linear}: {@code rate(n) = max(learningRate - decayA * n, decayB)}, in double.
 * </ul>
 *
 * <p>The three numbers are also the policy's saved state (the seed's {@code LrPolicyState}).
 * Constructed only by {@link OptimizerConfigs}, after validation.
 */
record LearningRatePolicy(LrPolicy kind, double learningRate, double decayA, double decayB) {

  static LearningRatePolicy constant(double learningRate) {
    return new LearningRatePolicy(LrPolicy.Const, learningRate, 0, 0);
  }

  static LearningRatePolicy linear(double learningRate, double decayA, double decayB) {
    return new LearningRatePolicy(LrPolicy.Linear, learningRate, decayA, decayB);
  }

  /** The rate of update number {@code n} (1 for the first update). */
  double rate(long n) {
    return kind == LrPolicy.Linear ? Math.max(learningRate - decayA * n, decayB) : learningRate;
  }

  @Override
  public String toString() {
    return kind == LrPolicy.Linear
        ? "linear(lr=" + learningRate + ", a=" + decayA + ", b=" + decayB + ")"
        : "const(lr=" + learningRate + ")";
  }
}
