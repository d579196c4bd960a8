package org.pserver.service;

import java.util.Objects;

/**
 * A parameter and its optimizer configuration: a serialized {@code paddle.OptimizerConfig} (empty:
 * SGD with a constant learning rate of 1.0). The seed's {@code ParameterWithConfig}.
 */
public record ParameterWithConfig(Parameter param, byte[] config) {
  public ParameterWithConfig {
    Objects.requireNonNull(param, "param");
    config = config == null ? new byte[0] : config;
  }
}
