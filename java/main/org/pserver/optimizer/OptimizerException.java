package org.pserver.optimizer;

/**
 * A bad optimizer config, bad parameter content, a bad gradient or (as {@link
 * InvalidStateException}) a bad saved state. The message names the problem and the offending
 * value, so the service can pass it to the client as is.
 *
 * <p>Whenever this is thrown, nothing has changed: no optimizer was created, or the optimizer the
 * call was made on still has the weights, state and step count it had before the call.
 *
 * <p>It extends {@link IllegalArgumentException} because every cause is an argument the caller
 * passed. The seed aborted the whole process on a bad config (a C++ {@code CHECK}); pserver
 * throws this instead.
 */
public class OptimizerException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  public OptimizerException(String message) {
    super(message);
  }

  public OptimizerException(String message, Throwable cause) {
    super(message, cause);
  }
}
