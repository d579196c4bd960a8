package org.pserver.optimizer;

/**
 * A saved optimizer state that {@link ParameterOptimizer#readState} cannot restore: truncated,
 * corrupted (bad magic, unknown format version, checksum mismatch), inconsistent with itself
 * (declared length, trailing bytes), or written for another optimizer, element type or config.
 * The message says which.
 */
public class InvalidStateException extends OptimizerException {
  private static final long serialVersionUID = 1L;

  public InvalidStateException(String message) {
    super(message);
  }
}
