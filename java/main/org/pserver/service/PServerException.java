package org.pserver.service;

/**
 * A refused operation: a {@link Code} (which the gRPC layer maps one to one onto a status code)
 * and a message naming the problem, the seed's exact string where it has one. When a {@link
 * Service} method throws this, nothing was changed, with one exception: UNAVAILABLE from {@link
 * Service#sendGrads} whose message says the push "may have been applied" (ownership was lost while
 * it was applied; retry it with the same trainer id and sequence number, which are deduplicated).
 * {@link Service#shutdown()} throws it, after stopping, when its final checkpoint failed.
 */
public final class PServerException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** Why, in gRPC's vocabulary. */
  public enum Code {
    INVALID_ARGUMENT,
    NOT_FOUND,
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    DEADLINE_EXCEEDED,
    CANCELLED,
    INTERNAL
  }

  private final Code code;

  public PServerException(Code code, String message) {
    super(message);
    this.code = code;
  }

  public PServerException(Code code, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
  }

  public Code code() {
    return code;
  }
}
