package org.pserver.client;

import io.grpc.Status;

/**
 * A call to one pserver that failed for good: a non-retryable status, or retries exhausted. Names
 * the pserver (index and address), the operation and the attempts made.
 *
 * <p>Trap: a failed {@code sendGrads} may or may not have been applied on that pserver (the reply
 * may have been what was lost); sending the same gradients again is a new push.
 */
public final class PServerCallException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final int index;
  private final String address;
  private final transient Status status;

  PServerCallException(int index, String address, String operation, int attempts, long millis, Status status, Throwable cause) {
    super("pserver " + index + " (" + (address == null ? "address unknown" : address) + "): " + operation
        + " failed after " + attempts + (attempts == 1 ? " attempt" : " attempts") + " in " + millis + " ms: "
        + status.getCode() + (status.getDescription() == null ? "" : ": " + status.getDescription()), cause);
    this.index = index;
    this.address = address;
    this.status = status;
  }

  /** The pserver index. */
  public int index() {
    return index;
  }

  /** Its address at the last attempt (null if it was unknown). */
  public String address() {
    return address;
  }

  /** The last gRPC status. */
  public Status status() {
    return status;
  }
}
