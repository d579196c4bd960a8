package org.pserver.cluster;

import static org.pserver.cluster.Etcd.bytes;
import static org.pserver.cluster.Etcd.quote;
import static org.pserver.cluster.Etcd.string;
import static org.pserver.cluster.LeaseKeeper.hex;

import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.lease.LeaseGrantResponse;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.PutOption;
import java.io.IOException;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Chooses the one trainer that initializes the pservers: the seed's {@code Select}/{@code Done},
 * with its lock leak (bug 13) and its re-initialization dead end (bug 12) fixed.
 *
 * <h2>Protocol</h2>
 *
 * <p>All of it runs under one etcd mutex, {@code /init_ps/lock} (each contender's key is {@code
 * /init_ps/lock/<lease-hex>} on its own session lease of {@code sessionTtlSeconds}, kept alive while
 * it waits and while it holds the lock). {@code /init_ps/done} = {@code "1"} records that the
 * parameters were initialized.
 *
 * <ol>
 *   <li><b>Start of training.</b> Every trainer calls {@link #select()}. It takes the lock and reads
 *       {@code /init_ps/done} in a transaction that succeeds only while it still holds the lock:
 *       <ul>
 *         <li>absent: returns {@code true} and <b>keeps the lock</b>. The trainer initializes every
 *             pserver, then calls {@link #done()}, which writes {@code /init_ps/done = "1"} (again
 *             guarded by still holding the lock) and unlocks. If it cannot finish, it calls {@link
 *             #release()} (or {@link #close()}), which unlocks <em>without</em> marking done, so the
 *             next trainer in line gets {@code true} and initializes instead (seed bug 13 left the
 *             lock held and everyone waiting).
 *         <li>{@code "1"}: unlocks and returns {@code false}: nothing to do.
 *         <li>anything else: unlocks and throws {@link IOException} naming the value.
 *       </ul>
 *       Trainers that arrive while the winner initializes wait on the lock, then see {@code "1"}.
 *   <li><b>A pserver came back empty</b> (it crashed without a checkpoint: seed bug 12, where
 *       {@code /init_ps/done} was already {@code "1"} and nobody re-initialized it). A trainer that
 *       notices calls {@link #selectFor selectFor(stillNeeded)}: it takes the same lock, then
 *       evaluates {@code stillNeeded} <em>while holding it</em> (typically an RPC: "does pserver 2
 *       still report uninitialized?"). {@code true}: it keeps the lock, re-initializes that pserver,
 *       then calls {@link #release()}. {@code false} (another trainer already did it): unlocks and
 *       returns {@code false}. Because the check runs under the lock, exactly one of the trainers
 *       that noticed re-initializes. {@code selectFor} neither reads nor writes {@code
 *       /init_ps/done}.
 * </ol>
 *
 * <h2>Traps</h2>
 *
 * <ul>
 *   <li>Waits are bounded: {@link #select()} and {@link #selectFor(BooleanSupplier)} wait at most
 *       the configured lock timeout (default 10 min) and throw {@link TimeoutException}, having
 *       removed their place in the queue.
 *   <li>A lease-based lock is not a guarantee by itself: if this trainer is partitioned from etcd
 *       longer than the session TTL, the lock passes to the next trainer. {@link #isHolding()}
 *       turns false before that can happen, and {@link #done()} is guarded by a transaction, so a
 *       deposed holder's {@code done()} fails instead of writing. The initialization RPCs themselves
 *       are not fenced: pservers must reject a second initialization on their own.
 *   <li>One operation at a time: the methods are thread-safe but serialized; {@link #close()} may
 *       be called from another thread and aborts a waiting {@code select}.
 *   <li>{@code /init_ps/done} is never deleted here; a new job on the same etcd must clear it.
 * </ul>
 */
public final class EtcdInitSelector implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EtcdInitSelector.class);
  private static final AtomicInteger INSTANCES = new AtomicInteger();

  private final String endpoints;
  private final Duration dialTimeout;
  private final int sessionTtlSeconds;
  private final Duration lockTimeout;
  private final Client etcd;
  private final EtcdMutex mutex;
  private final ScheduledExecutorService scheduler;
  private final ReentrantLock op = new ReentrantLock();
  private final CountDownLatch closedLatch = new CountDownLatch(1);

  // Guarded by op (volatile for isHolding()):
  private volatile EtcdMutex.Held held;
  private volatile LeaseKeeper session;
  private long sessionLease;

  /** The seed's settings: a 5 s session TTL; waits for the lock at most 10 minutes. */
  public EtcdInitSelector(String endpoints, Duration dialTimeout) {
    this(endpoints, dialTimeout, 5, Duration.ofMinutes(10));
  }

  /** As {@link #EtcdInitSelector(String, Duration)}, with TLS and authentication to etcd. */
  public EtcdInitSelector(String endpoints, Duration dialTimeout, EtcdSecurity security) {
    this(endpoints, dialTimeout, 5, Duration.ofMinutes(10), security);
  }

  /**
   * @param sessionTtlSeconds TTL of the lease that holds our place in the lock (>= 1)
   * @param lockTimeout how long {@link #select()} and {@link #selectFor(BooleanSupplier)} wait
   */
  public EtcdInitSelector(String endpoints, Duration dialTimeout, int sessionTtlSeconds, Duration lockTimeout) {
    this(endpoints, dialTimeout, sessionTtlSeconds, lockTimeout, EtcdSecurity.NONE);
  }

  /**
   * The full form.
   *
   * @param security TLS and authentication to etcd, as the pservers use ({@code --etcd-cacert},
   *     {@code --etcd-cert}, {@code --etcd-key}, {@code --etcd-user}, {@code --etcd-password});
   *     {@link EtcdSecurity#NONE} for plaintext. With wrong settings the calls fail with an
   *     {@link IOException}.
   * @throws IllegalArgumentException if a certificate or key file cannot be read or used
   */
  public EtcdInitSelector(
      String endpoints, Duration dialTimeout, int sessionTtlSeconds, Duration lockTimeout, EtcdSecurity security) {
    Etcd.parseEndpoints(endpoints);
    Objects.requireNonNull(security, "security");
    if (sessionTtlSeconds < 1) {
      throw new IllegalArgumentException("session TTL must be >= 1 s, got " + sessionTtlSeconds);
    }
    if (dialTimeout.isNegative() || dialTimeout.isZero() || lockTimeout.isNegative() || lockTimeout.isZero()) {
      throw new IllegalArgumentException("timeouts must be > 0");
    }
    this.endpoints = endpoints;
    this.dialTimeout = dialTimeout;
    this.sessionTtlSeconds = sessionTtlSeconds;
    this.lockTimeout = lockTimeout;
    Duration keepAliveTimeout = dialTimeout.compareTo(Duration.ofSeconds(sessionTtlSeconds).dividedBy(3)) < 0
        ? dialTimeout
        : Duration.ofSeconds(sessionTtlSeconds).dividedBy(3);
    this.etcd = Etcd.connect(endpoints, dialTimeout, keepAliveTimeout, security);
    this.mutex = new EtcdMutex(etcd, EtcdKeys.initLockPrefix(), dialTimeout, endpoints);
    this.scheduler =
        Executors.newSingleThreadScheduledExecutor(Etcd.threads("pserver-init-lock-" + INSTANCES.incrementAndGet()));
  }

  /** {@link #select(Duration)} with the configured lock timeout. */
  public boolean select() throws IOException, InterruptedException, TimeoutException {
    return select(lockTimeout);
  }

  /**
   * Should this trainer initialize the pservers? See the class comment.
   *
   * @return true: this trainer holds the lock and must initialize, then call {@link #done()} (or
   *     {@link #release()} if it cannot); false: initialization is done, the lock is released
   * @throws IOException if {@code /init_ps/done} holds something other than "1", or etcd fails;
   *     the lock is released
   * @throws TimeoutException if the lock was not obtained within {@code timeout}
   * @throws IllegalStateException if this selector already holds the lock
   */
  public boolean select(Duration timeout) throws IOException, InterruptedException, TimeoutException {
    return underLock(
        timeout,
        "select",
        h -> {
          TxnResponse r =
              call(
                  etcd.getKVClient()
                      .txn()
                      .If(EtcdMutex.owns(h))
                      .Then(Op.get(bytes(EtcdKeys.INIT_DONE), GetOption.DEFAULT))
                      .commit(),
                  "read " + EtcdKeys.INIT_DONE);
          if (!r.isSucceeded()) {
            throw new IOException("no longer the owner of the lock " + EtcdKeys.INIT_LOCK + " (session lost)");
          }
          KeyValue kv = Etcd.txnGet(r, 0);
          if (kv == null) {
            log.info("selected to initialize the pservers ({} absent); holding {}", EtcdKeys.INIT_DONE, EtcdKeys.INIT_LOCK);
            return true;
          }
          String v = string(kv.getValue());
          if (EtcdKeys.INIT_DONE_VALUE.equals(v)) {
            log.info("pservers already initialized ({}={})", EtcdKeys.INIT_DONE, v);
            return false;
          }
          throw new IOException(
              "key "
                  + EtcdKeys.INIT_DONE
                  + " has unexpected value "
                  + quote(v)
                  + "; expected \""
                  + EtcdKeys.INIT_DONE_VALUE
                  + "\" or no key (fix it with etcdctl)");
        });
  }

  /** {@link #selectFor(BooleanSupplier, Duration)} with the configured lock timeout. */
  public boolean selectFor(BooleanSupplier stillNeeded) throws IOException, InterruptedException, TimeoutException {
    return selectFor(stillNeeded, lockTimeout);
  }

  /**
   * Re-initialization (seed bug 12): takes the init lock, evaluates {@code stillNeeded} while
   * holding it, and keeps the lock if it says true. See the class comment.
   *
   * @param stillNeeded evaluated in the calling thread, under the lock; an exception it throws
   *     releases the lock and propagates
   * @return true: this trainer holds the lock and must re-initialize, then call {@link #release()};
   *     false: not needed (any more), the lock is released
   * @throws TimeoutException if the lock was not obtained within {@code timeout}
   * @throws IOException if etcd fails or the lock was lost while {@code stillNeeded} ran
   */
  public boolean selectFor(BooleanSupplier stillNeeded, Duration timeout)
      throws IOException, InterruptedException, TimeoutException {
    Objects.requireNonNull(stillNeeded, "stillNeeded");
    return underLock(
        timeout,
        "selectFor",
        h -> {
          if (!stillNeeded.getAsBoolean()) {
            log.info("re-initialization no longer needed");
            return false;
          }
          TxnResponse r = call(etcd.getKVClient().txn().If(EtcdMutex.owns(h)).commit(), "check the lock");
          if (!r.isSucceeded()) {
            throw new IOException(
                "lost the lock " + EtcdKeys.INIT_LOCK + " while checking whether re-initialization is needed");
          }
          log.info("selected to re-initialize; holding {}", EtcdKeys.INIT_LOCK);
          return true;
        });
  }

  /**
   * Marks initialization done ({@code /init_ps/done = "1"}, only if this trainer still holds the
   * lock) and unlocks. The lock is released even if this throws.
   *
   * @throws IllegalStateException if this selector does not hold the lock
   * @throws IOException if the lock was lost meanwhile (nothing written) or etcd failed (the write
   *     may or may not have happened)
   */
  public void done() throws IOException {
    op.lock();
    try {
      EtcdMutex.Held h = held;
      if (h == null) {
        throw new IllegalStateException(
            "done() called without holding the init lock: select() did not return true, or done()/release() already ran");
      }
      try {
        TxnResponse r =
            Etcd.awaitIo(
                etcd.getKVClient()
                    .txn()
                    .If(EtcdMutex.owns(h))
                    .Then(Op.put(bytes(EtcdKeys.INIT_DONE), bytes(EtcdKeys.INIT_DONE_VALUE), PutOption.DEFAULT))
                    .commit(),
                dialTimeout,
                "write " + EtcdKeys.INIT_DONE,
                endpoints);
        if (!r.isSucceeded()) {
          throw new IOException(
              "no longer the owner of the lock " + EtcdKeys.INIT_LOCK + "; " + EtcdKeys.INIT_DONE + " was not written");
        }
        log.info("initialization done: {}={}", EtcdKeys.INIT_DONE, EtcdKeys.INIT_DONE_VALUE);
      } finally {
        unlock();
      }
    } finally {
      op.unlock();
    }
  }

  /**
   * Unlocks without marking initialization done (the initializer failed, or a re-initialization
   * finished). A no-op if not holding the lock. Never throws: if etcd is unreachable the lock goes
   * away with the session lease within its TTL.
   */
  public void release() {
    op.lock();
    try {
      if (held != null) {
        log.info("releasing {} without marking done", EtcdKeys.INIT_LOCK);
      }
      unlock();
    } finally {
      op.unlock();
    }
  }

  /** True while this selector holds the lock and its session lease is provably alive. */
  public boolean isHolding() {
    LeaseKeeper s = session;
    return held != null && s != null && s.isValid();
  }

  /** Releases the lock if held (without marking done) and closes the etcd connection. Idempotent. */
  @Override
  public void close() {
    if (closedLatch.getCount() == 0) {
      return;
    }
    closedLatch.countDown(); // aborts a waiting select()
    op.lock();
    try {
      unlock();
    } finally {
      op.unlock();
    }
    scheduler.shutdownNow();
    try {
      etcd.close();
    } catch (RuntimeException e) {
      log.warn("closing the etcd connection: {}", e.toString());
    }
  }

  // ---------------------------------------------------------------------------------------------

  private interface Decision {
    /** Runs holding the lock; true keeps it. */
    boolean decide(EtcdMutex.Held h) throws IOException, InterruptedException;
  }

  private boolean underLock(Duration timeout, String what, Decision decision)
      throws IOException, InterruptedException, TimeoutException {
    op.lockInterruptibly();
    try {
      if (closedLatch.getCount() == 0) {
        throw new IOException("init selector for " + endpoints + " is closed");
      }
      if (held != null) {
        throw new IllegalStateException(what + "() while already holding the init lock: call done() or release() first");
      }
      long deadline = System.nanoTime() + timeout.toNanos();
      long sent = System.nanoTime();
      LeaseGrantResponse g = call(etcd.getLeaseClient().grant(sessionTtlSeconds), "grant a session lease");
      sessionLease = g.getID();
      LeaseKeeper keeper =
          new LeaseKeeper(
              etcd.getLeaseClient(),
              g.getID(),
              g.getTTL(),
              sent,
              scheduler,
              dialTimeout,
              endpoints,
              (k, reason) ->
                  log.error(
                      "lost the session of {}: {}; another trainer may take the lock, and done() will fail",
                      EtcdKeys.INIT_LOCK,
                      reason));
      session = keeper;
      keeper.start();
      boolean keep = false;
      try {
        EtcdMutex.Held h;
        try {
          h = mutex.acquire(g.getID(), deadline, keeper::isValid, closedLatch);
        } catch (TimeoutException e) {
          TimeoutException t =
              new TimeoutException(what + "(): waited " + Etcd.format(timeout) + " for " + EtcdKeys.INIT_LOCK + ": " + e.getMessage());
          t.initCause(e);
          throw t;
        }
        held = h;
        keep = decision.decide(h);
        return keep;
      } finally {
        if (!keep) {
          unlock();
        }
      }
    } finally {
      op.unlock();
    }
  }

  /** Deletes our lock key (if still ours), stops the keep-alives and revokes the session lease. */
  private void unlock() {
    EtcdMutex.Held h = held;
    held = null;
    if (h != null) {
      mutex.release(h);
    }
    LeaseKeeper s = session;
    session = null;
    if (s != null) {
      s.stop();
    }
    long lease = sessionLease;
    sessionLease = 0;
    if (lease != 0) {
      try {
        Etcd.awaitCleanup(etcd.getLeaseClient().revoke(lease), dialTimeout, "revoke session lease " + hex(lease), endpoints);
      } catch (IOException e) {
        if (!Etcd.isLeaseNotFound(e)) {
          log.warn("{}; it expires within {} s", e.getMessage(), sessionTtlSeconds);
        }
      }
    }
  }

  private <T> T call(java.util.concurrent.CompletableFuture<T> f, String what) throws IOException, InterruptedException {
    return Etcd.await(f, dialTimeout, what, endpoints);
  }
}
