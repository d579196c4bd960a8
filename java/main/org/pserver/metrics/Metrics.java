package org.pserver.metrics;

import java.util.Locale;

/**
 * The events a pserver reports for monitoring, free of any metrics library: {@code Service} and
 * {@code CheckpointManager} call these, and {@link PrometheusMetrics} turns them into Prometheus
 * metrics. Every method has a no-op default, so an implementation overrides only what it needs and
 * {@link #NONE} (the default everywhere) costs nothing.
 *
 * <p>Contract and traps:
 *
 * <ul>
 *   <li>Methods are called on the hot path (inside {@code SendGrad}), from many threads at once:
 *       implementations must be thread-safe, must not block and must not throw.
 *   <li>Counts are of <em>gradients</em> (one per parameter in a request), not of requests: a
 *       {@code SendGrads} with five gradients that is refused counts five rejections. Requests are
 *       counted by the RPC layer. For every gradient that reaches the service exactly one of
 *       {@link #gradientsApplied}, {@link #gradientsDuplicate} or {@link #gradientsRejected}
 *       counts it. A push that was applied but not acknowledged, because the lease was lost while
 *       it was being applied, counts as applied (it was; the retry will be a duplicate).
 *   <li>Requests refused before they reach the service (unauthenticated, malformed, an unknown
 *       element type, over the message size limit) are not reported here; the RPC metrics see
 *       them by status code.
 *   <li>Durations are in nanoseconds ({@link System#nanoTime()} differences).
 * </ul>
 */
public interface Metrics {
  /** Reports nothing. */
  Metrics NONE = new Metrics() {};

  /** Why gradients were refused; {@link #label()} is the Prometheus label value. */
  enum Rejection {
    /** SendGrad before FinishInitParams ("pserver not fully initialized"). */
    UNINITIALIZED,
    /** Fenced (the lease is lost) or shutting down: UNAVAILABLE. */
    UNAVAILABLE,
    /** A parameter name that does not exist. */
    NOT_FOUND,
    /** The gradient's element type differs from the parameter's. */
    TYPE_MISMATCH,
    /** The gradient's byte length differs from the parameter's. */
    LENGTH_MISMATCH,
    /** NaN or infinity in a gradient while non-finite values are refused. */
    NON_FINITE,
    /** Anything else about the request (no gradient in it, a name twice). */
    INVALID;

    /** The lower-case label value, e.g. {@code non_finite}. */
    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  /**
   * The pserver's standing in the cluster. Standalone pservers stay {@link #STANDALONE}; the etcd
   * wiring reports the others through {@link #registration}.
   */
  enum LeaseState {
    /** No etcd: the pserver owns its index by configuration. */
    STANDALONE,
    /** Waiting for, or claiming, an index in etcd. */
    REGISTERING,
    /** Registered with a live lease: writes are acknowledged. */
    HELD,
    /** The lease expired or could not be proven: writes are refused (fenced). */
    LOST,
    /** Deregistered at shutdown. */
    RELEASED;

    /** The lower-case label value, e.g. {@code held}. */
    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  /** Gradients arrived at the service (before any check): their count and content bytes. */
  default void gradientsReceived(int count, long bytes) {}

  /** Gradients applied by one request, and how long checking and applying them took. */
  default void gradientsApplied(int count, long nanos) {}

  /** Gradients acknowledged without being applied again: their (trainer, seq) was applied before. */
  default void gradientsDuplicate(int count) {}

  /** Gradients refused (all those of the request), and why. */
  default void gradientsRejected(Rejection reason, int count) {}

  /** Parameters returned to a reader: their count and content bytes. */
  default void parametersSent(int count, long bytes) {}

  /** A checkpoint was written and published: file size and duration (write, fsync, publish). */
  default void checkpointTaken(long bytes, long nanos) {}

  /** Taking or publishing a checkpoint failed after {@code nanos}. */
  default void checkpointFailed(long nanos) {}

  /**
   * Recovery could not use the published checkpoint and loaded an older one (or none could be
   * loaded, and the pserver refuses to start).
   */
  default void checkpointFallback() {}

  /**
   * The pserver's registration changed: its lease state and the index it holds (-1 when it holds
   * none). The etcd wiring calls this; standalone pservers report {@link LeaseState#STANDALONE}.
   */
  default void registration(LeaseState state, int index) {}
}
