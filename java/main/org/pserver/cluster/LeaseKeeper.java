package org.pserver.cluster;

import io.etcd.jetcd.Lease;
import io.etcd.jetcd.lease.LeaseKeepAliveResponse;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * FOR INTERNAL USE ONLY. Keeps one etcd lease alive with {@code keepAliveOnce} about every TTL/3
 * and knows, conservatively, until when the lease is certainly alive on the server.
 *
 * <p>The proof: etcd renews a lease to (receipt time + TTL) and receipt comes after our send, so a
 * keep-alive <em>sent</em> at {@code s} and acknowledged with TTL {@code t} proves the lease lives
 * at least until {@code s + t}. {@link #validUntilNanos()} is the latest such bound minus a safety
 * margin (for clock-rate differences and scheduling); {@link #isValid()} compares it with {@link
 * System#nanoTime()} on every call, so it turns false at that instant without waiting for any
 * thread. A timer then reports the loss once.
 *
 * <p>Why not jetcd's {@code keepAlive(observer)}: it renews on its own schedule and reports
 * neither send times nor a missed deadline until ~TTL later, which is too late to fence writes.
 *
 * <p>Threading: all state changes happen on the given single-thread scheduler; {@link #isValid()}
 * and the getters are safe from any thread. At most one keep-alive is in flight.
 */
final class LeaseKeeper {
  private static final Logger log = LoggerFactory.getLogger(LeaseKeeper.class);

  /** Called once, on the scheduler thread, when the lease can no longer be proven alive. */
  interface LossHandler {
    void leaseLost(LeaseKeeper keeper, String reason);
  }

  private final Lease leases;
  private final long leaseId;
  private final ScheduledExecutorService scheduler;
  private final Duration rpcTimeout;
  private final LossHandler onLoss;
  private final String endpoints;
  private volatile long ttlSeconds;
  private volatile long validUntilNanos;
  private volatile long lastSentNanos;
  private volatile boolean stopped;
  private volatile boolean lost;
  // Scheduler-thread only:
  private boolean inFlight;
  private int failures;
  private ScheduledFuture<?> ticker;
  private ScheduledFuture<?> deadline;

  /**
   * @param proofSentNanos when the grant or keep-alive that proves the lease was sent
   * @param ttlSeconds the TTL etcd granted (not the one asked for: etcd raises tiny TTLs)
   */
  LeaseKeeper(
      Lease leases,
      long leaseId,
      long ttlSeconds,
      long proofSentNanos,
      ScheduledExecutorService scheduler,
      Duration rpcTimeout,
      String endpoints,
      LossHandler onLoss) {
    this.leases = leases;
    this.leaseId = leaseId;
    this.ttlSeconds = ttlSeconds;
    this.scheduler = scheduler;
    this.rpcTimeout = rpcTimeout;
    this.endpoints = endpoints;
    this.onLoss = onLoss;
    this.lastSentNanos = proofSentNanos;
    this.validUntilNanos = proofSentNanos + bound(ttlSeconds);
  }

  /** TTL minus the safety margin: a tenth of the TTL, at least 50 ms and at most 1 s. */
  static long bound(long ttlSeconds) {
    long ttl = TimeUnit.SECONDS.toNanos(ttlSeconds);
    long margin = Math.max(TimeUnit.MILLISECONDS.toNanos(50), Math.min(TimeUnit.SECONDS.toNanos(1), ttl / 10));
    return ttl - margin;
  }

  /** The keep-alive period for a TTL: a third of it, at least 100 ms. */
  static long intervalNanos(long ttlSeconds) {
    return Math.max(TimeUnit.MILLISECONDS.toNanos(100), TimeUnit.SECONDS.toNanos(ttlSeconds) / 3);
  }

  long leaseId() {
    return leaseId;
  }

  long ttlSeconds() {
    return ttlSeconds;
  }

  long validUntilNanos() {
    return validUntilNanos;
  }

  long lastSentNanos() {
    return lastSentNanos;
  }

  /** True while the lease is provably alive and no loss was seen. */
  boolean isValid() {
    return !stopped && !lost && System.nanoTime() - validUntilNanos < 0;
  }

  void start() {
    scheduler.execute(
        () -> {
          if (stopped) {
            return;
          }
          long every = intervalNanos(ttlSeconds);
          ticker = scheduler.scheduleWithFixedDelay(this::tick, every, every, TimeUnit.NANOSECONDS);
          armDeadline();
        });
  }

  /** Stops renewing (does not revoke). Safe from any thread; idempotent. */
  void stop() {
    stopped = true;
    ScheduledFuture<?> t = ticker;
    if (t != null) {
      t.cancel(false);
    }
    ScheduledFuture<?> d = deadline;
    if (d != null) {
      d.cancel(false);
    }
  }

  private void tick() {
    if (stopped || lost || inFlight) {
      return;
    }
    inFlight = true;
    long sent = System.nanoTime();
    CompletableFuture<LeaseKeepAliveResponse> f;
    try {
      f = leases.keepAliveOnce(leaseId);
    } catch (RuntimeException e) {
      inFlight = false;
      failed(e);
      return;
    }
    f.orTimeout(rpcTimeout.toNanos() + TimeUnit.MILLISECONDS.toNanos(200), TimeUnit.NANOSECONDS)
        .whenComplete(
            (r, t) -> {
              try {
                scheduler.execute(() -> answered(sent, r, t));
              } catch (RejectedExecutionException closing) {
                // the owner is shutting down
              }
            });
  }

  private void answered(long sent, LeaseKeepAliveResponse r, Throwable t) {
    inFlight = false;
    if (stopped || lost) {
      return;
    }
    if (t == null) {
      ttlSeconds = r.getTTL();
      lastSentNanos = sent;
      long until = sent + bound(r.getTTL());
      if (until - validUntilNanos > 0) {
        validUntilNanos = until;
      }
      if (failures > 0) {
        log.info("keep-alive for lease {} works again after {} failure(s)", hex(leaseId), failures);
        failures = 0;
      }
      armDeadline();
      return;
    }
    if (Etcd.isLeaseNotFound(t)) {
      lose("etcd says lease " + hex(leaseId) + " no longer exists (it expired or was revoked)");
      return;
    }
    failed(t);
  }

  private void failed(Throwable t) {
    failures++;
    long leftMs = TimeUnit.NANOSECONDS.toMillis(validUntilNanos - System.nanoTime());
    String msg =
        Etcd.translate(t, "keep-alive of lease " + hex(leaseId), endpoints, rpcTimeout).getMessage();
    if (failures == 1 || failures % 10 == 0) {
      log.warn("{} (failure {}); the lease is provably alive for {} ms more", msg, failures, Math.max(0, leftMs));
    } else {
      log.debug("{} (failure {})", msg, failures);
    }
  }

  private void armDeadline() {
    ScheduledFuture<?> d = deadline;
    if (d != null) {
      d.cancel(false);
    }
    long delay = Math.max(0, validUntilNanos - System.nanoTime());
    deadline = scheduler.schedule(this::checkDeadline, delay, TimeUnit.NANOSECONDS);
  }

  private void checkDeadline() {
    if (stopped || lost) {
      return;
    }
    long now = System.nanoTime();
    if (now - validUntilNanos >= 0) {
      long sinceMs = TimeUnit.NANOSECONDS.toMillis(now - lastSentNanos);
      lose(
          "no keep-alive of lease "
              + hex(leaseId)
              + " acknowledged for "
              + sinceMs
              + " ms (TTL "
              + ttlSeconds
              + " s): etcd may expire it any moment");
    } else {
      armDeadline();
    }
  }

  private void lose(String reason) {
    lost = true;
    stop();
    onLoss.leaseLost(this, reason);
  }

  static String hex(long leaseId) {
    return Long.toHexString(leaseId);
  }
}
