package org.pserver.cluster;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * FOR INTERNAL USE ONLY. Capped exponential backoff with ±20 % jitter (so pservers started
 * together do not retry in lock-step). Not thread-safe: one per retry loop.
 */
final class Backoff {
  private final long initialNanos;
  private final long maxNanos;
  private long nextNanos;

  Backoff(Duration initial, Duration max) {
    if (initial.isNegative() || initial.isZero() || max.compareTo(initial) < 0) {
      throw new IllegalArgumentException("backoff needs 0 < initial <= max, got " + initial + ", " + max);
    }
    this.initialNanos = initial.toNanos();
    this.maxNanos = max.toNanos();
    this.nextNanos = initialNanos;
  }

  /** The delay before the next try; each call doubles the base delay up to the cap. */
  Duration next() {
    long base = nextNanos;
    nextNanos = Math.min(maxNanos, base * 2);
    double jitter = 0.8 + 0.4 * ThreadLocalRandom.current().nextDouble();
    return Duration.ofNanos(Math.min(maxNanos, (long) (base * jitter)));
  }

  /** Back to the initial delay, after a success. */
  void reset() {
    nextNanos = initialNanos;
  }
}
