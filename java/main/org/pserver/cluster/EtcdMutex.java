package org.pserver.cluster;

import static org.pserver.cluster.Etcd.bytes;
import static org.pserver.cluster.Etcd.string;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.DeleteOption;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.PutOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * FOR INTERNAL USE ONLY. A lease-based etcd mutex with the same key layout as etcd's Go {@code
 * concurrency.Mutex}: each contender puts {@code <prefix><lease-id-hex>} on its lease; the
 * contender whose key has the lowest create revision holds the lock; the others wait for the
 * deletion of the key just before theirs.
 *
 * <p>Written by hand rather than with etcd's Lock RPC so that every wait is bounded here: the RPC
 * blocks on the server with no deadline and could acquire the lock after the caller gave up.
 *
 * <p>Like any lease-based lock it cannot guarantee mutual exclusion by itself (a holder may be
 * paused past its lease). Writes that depend on holding it must be guarded with {@link #owns}, a
 * comparison of the key's create revision, inside the same transaction.
 */
final class EtcdMutex {
  private static final Logger log = LoggerFactory.getLogger(EtcdMutex.class);
  private static final long SLICE_NANOS = TimeUnit.MILLISECONDS.toNanos(200);

  /** A held lock: our key and its create revision (the fencing token). */
  record Held(String key, long revision) {}

  private final Client etcd;
  private final String prefix;
  private final Duration rpcTimeout;
  private final String endpoints;

  EtcdMutex(Client etcd, String prefix, Duration rpcTimeout, String endpoints) {
    this.etcd = etcd;
    this.prefix = prefix;
    this.rpcTimeout = rpcTimeout;
    this.endpoints = endpoints;
  }

  /** The comparison that holds only while {@code h} is still the lock key we created. */
  static Cmp owns(Held h) {
    return new Cmp(bytes(h.key()), Cmp.Op.EQUAL, CmpTarget.createRevision(h.revision()));
  }

  /**
   * Waits for the lock.
   *
   * @param sessionAlive false once the lease cannot be proven alive: waiting stops then
   * @throws TimeoutException if not acquired before {@code deadlineNanos}; our key is removed
   * @throws IOException if etcd fails, the session is lost, or {@code closed} fires; our key is
   *     removed (best effort)
   */
  Held acquire(long leaseId, long deadlineNanos, BooleanSupplier sessionAlive, CountDownLatch closed)
      throws IOException, InterruptedException, TimeoutException {
    String key = prefix + Long.toHexString(leaseId);
    ByteSequence k = bytes(key);
    TxnResponse r =
        call(
            etcd.getKVClient()
                .txn()
                .If(new Cmp(k, Cmp.Op.EQUAL, CmpTarget.createRevision(0)))
                .Then(Op.put(k, ByteSequence.EMPTY, PutOption.builder().withLeaseId(leaseId).build()))
                .Else(Op.get(k, GetOption.DEFAULT))
                .commit(),
            "create lock key " + key);
    long revision;
    if (r.isSucceeded()) {
      revision = r.getHeader().getRevision();
    } else {
      KeyValue kv = Etcd.txnGet(r, 0);
      if (kv == null) {
        throw new IOException("lock key " + key + " vanished while it was being created");
      }
      revision = kv.getCreateRevision();
    }
    Held held = new Held(key, revision);
    boolean acquired = false;
    try {
      String waitingFor = null;
      while (true) {
        GetResponse before;
        try {
          before =
            call(
                etcd.getKVClient()
                    .get(
                        bytes(prefix),
                        GetOption.builder()
                            .isPrefix(true)
                            .withSortField(GetOption.SortTarget.CREATE)
                            .withSortOrder(GetOption.SortOrder.DESCEND)
                            .withMaxCreateRevision(revision - 1)
                            .withLimit(1)
                            .build()),
                "look for earlier holders of " + prefix);
        } catch (IOException e) {
          // Transient trouble while queued: keep our place as long as the session is provable.
          if (!sessionAlive.getAsBoolean() || System.nanoTime() - deadlineNanos >= 0) {
            throw e;
          }
          log.debug("{}; still waiting for the lock", e.getMessage());
          if (closed.await(SLICE_NANOS, TimeUnit.NANOSECONDS)) {
            throw new IOException("closed while waiting for the lock " + prefix, e);
          }
          continue;
        }
        if (before.getKvs().isEmpty()) {
          KeyValue mine = Etcd.first(call(etcd.getKVClient().get(k), "read " + key));
          if (mine == null || mine.getCreateRevision() != revision) {
            throw new IOException(
                "lock key " + key + " disappeared while waiting (session lease expired or revoked)");
          }
          acquired = true;
          return held;
        }
        String predecessor = string(before.getKvs().get(0).getKey());
        if (!predecessor.equals(waitingFor)) {
          log.info("waiting for the lock {}: held or queued by {}", prefix, predecessor);
          waitingFor = predecessor;
        }
        waitDeleted(predecessor, before.getHeader().getRevision() + 1, deadlineNanos, sessionAlive, closed);
      }
    } finally {
      if (!acquired) {
        release(held);
      }
    }
  }

  /** Deletes our key if it is still ours. Best effort: failures are logged, the lease cleans up. */
  void release(Held h) {
    try {
      Etcd.awaitCleanup(
          etcd.getKVClient()
              .txn()
              .If(owns(h))
              .Then(Op.delete(bytes(h.key()), DeleteOption.DEFAULT))
              .commit(),
          rpcTimeout,
          "delete lock key " + h.key(),
          endpoints);
    } catch (IOException e) {
      log.warn("{}; it goes away with its session lease", e.getMessage());
    }
  }

  private void waitDeleted(
      String key, long fromRevision, long deadlineNanos, BooleanSupplier sessionAlive, CountDownLatch closed)
      throws IOException, InterruptedException, TimeoutException {
    CompletableFuture<Void> gone = new CompletableFuture<>();
    Watch.Watcher w =
        etcd.getWatchClient()
            .watch(
                bytes(key),
                WatchOption.builder().withRevision(fromRevision).build(),
                Watch.listener(
                    resp -> {
                      for (WatchEvent e : resp.getEvents()) {
                        if (e.getEventType() == WatchEvent.EventType.DELETE) {
                          gone.complete(null);
                        }
                      }
                    },
                    t -> gone.complete(null), // look again: the loop re-checks the predecessor
                    () -> gone.complete(null)));
    try {
      while (true) {
        if (closed.getCount() == 0) {
          throw new IOException("closed while waiting for the lock " + prefix);
        }
        if (!sessionAlive.getAsBoolean()) {
          throw new IOException("the session lease was lost while waiting for the lock " + prefix);
        }
        long left = deadlineNanos - System.nanoTime();
        if (left <= 0) {
          throw new TimeoutException("the lock " + prefix + " is still held (by " + key + ")");
        }
        try {
          gone.get(Math.min(left, SLICE_NANOS), TimeUnit.NANOSECONDS);
          return;
        } catch (TimeoutException slice) {
          // check the deadline, the session and close() again
        } catch (ExecutionException e) {
          return;
        }
      }
    } finally {
      w.close();
    }
  }

  private <T> T call(CompletableFuture<T> f, String what) throws IOException, InterruptedException {
    return Etcd.await(f, rpcTimeout, what, endpoints);
  }
}
