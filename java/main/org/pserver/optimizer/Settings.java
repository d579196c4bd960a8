package org.pserver.optimizer;

import org.pserver.proto.paddle.OptimizerConfig;

/**
 * A parsed and validated config: the algorithm, the learning-rate policy and the two clips
 * ({@code 0} = off). Built only by {@link OptimizerConfigs#settings(byte[])}.
 */
record Settings(
    OptimizerConfig proto,
    UpdateRule rule,
    LearningRatePolicy policy,
    double clipNorm,
    double clipValue) {

  @Override
  public String toString() {
    return rule + ", lr " + policy + ", clip_norm " + clipNorm + ", clip_value " + clipValue;
  }
}
