package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Choosing the initializing trainer, and the re-initialization of a pserver that came back empty. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class EtcdInitSelectorTest {
  @RegisterExtension static final EtcdServerExtension ETCD = new EtcdServerExtension("selector");

  private final List<EtcdInitSelector> open = new CopyOnWriteArrayList<>();
  private final ExecutorService pool = Executors.newCachedThreadPool();

  @AfterEach
  void closeAll() {
    open.forEach(EtcdInitSelector::close);
    pool.shutdownNow();
  }

  private EtcdInitSelector trainer() {
    EtcdInitSelector s = new EtcdInitSelector(ETCD.endpoint(), Duration.ofSeconds(1), 2, Duration.ofSeconds(20));
    open.add(s);
    return s;
  }

  @Test
  void fourRacingTrainers_exactlyOneInitializes_theOthersReturnFalseAfterItIsDone() throws Exception {
    EtcdServer etcd = ETCD.server();
    List<EtcdInitSelector> trainers = List.of(trainer(), trainer(), trainer(), trainer());
    AtomicInteger initializing = new AtomicInteger();
    AtomicInteger maxConcurrent = new AtomicInteger();
    AtomicBoolean doneMarked = new AtomicBoolean();
    List<String> falseBeforeDone = new CopyOnWriteArrayList<>();
    CountDownLatch go = new CountDownLatch(1);
    List<Future<Boolean>> results = new ArrayList<>();
    for (EtcdInitSelector t : trainers) {
      Callable<Boolean> run =
          () -> {
            go.await();
            if (t.select()) {
              maxConcurrent.accumulateAndGet(initializing.incrementAndGet(), Math::max);
              assertTrue(t.isHolding());
              Thread.sleep(400); // "InitParam for every parameter"
              initializing.decrementAndGet();
              doneMarked.set(true);
              t.done();
              assertFalse(t.isHolding());
              return true;
            }
            if (!doneMarked.get()) {
              falseBeforeDone.add("a trainer returned false before done()");
            }
            return false;
          };
      results.add(pool.submit(run));
    }
    go.countDown();
    int winners = 0;
    for (Future<Boolean> f : results) {
      winners += f.get(20, TimeUnit.SECONDS) ? 1 : 0;
    }
    assertEquals(1, winners);
    assertEquals(1, maxConcurrent.get());
    assertEquals(List.of(), falseBeforeDone);
    assertEquals("1", etcd.keys("/init_ps/done").get("/init_ps/done").value());
    assertEquals(0, etcd.keys("/init_ps/done").get("/init_ps/done").lease(), "done is on no lease");
    assertEquals(Map.of(), etcd.keys("/init_ps/lock"), "no lock keys left");
    assertEquals(List.of(), etcd.leases(), "no session leases left");

    // "At once": nobody holds or queues for the lock (checked above), so it must not wait for one
    // (a leftover lock key would cost it a session TTL, a stuck one the 20 s lock timeout). The
    // bound only has to tell that apart from a round trip on a loaded machine.
    long t0 = System.nanoTime();
    assertFalse(trainer().select(), "a trainer arriving later is told at once");
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    assertTrue(ms < 5000, "the late trainer took " + ms + " ms");
  }

  @Test
  void releaseWithoutDoneHandsTheInitializationToTheNextTrainer() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdInitSelector a = trainer();
    EtcdInitSelector b = trainer();
    assertTrue(a.select());
    Future<Boolean> bSelect = pool.submit(() -> b.select());
    try (EtcdInspector view = new EtcdInspector(etcd)) {
      Await.until(Duration.ofSeconds(10), () -> view.keys("/init_ps/lock/").size() == 2,
          () -> "B queues behind A: " + view.keys("/init_ps/lock/"));
    }
    assertFalse(bSelect.isDone(), "B waits while A holds the lock");

    a.release(); // A failed to initialize (seed bug 13: the lock stayed held forever)
    assertTrue(bSelect.get(5, TimeUnit.SECONDS), "B initializes instead");
    assertFalse(etcd.keys("/init_ps/").containsKey("/init_ps/done"));
    b.done();
    assertEquals("1", etcd.keys("/init_ps/done").get("/init_ps/done").value());
    a.release(); // no-op when not holding
    assertThrows(IllegalStateException.class, a::done, "done() without holding");
  }

  @Test
  void selectForLetsExactlyOneTrainerReinitializeAPserverThatCameBackEmpty() throws Exception {
    ETCD.server().etcdctl("put", "/init_ps/done", "1"); // the job was initialized long ago
    AtomicBoolean pserver2Empty = new AtomicBoolean(true);
    AtomicInteger reinitializations = new AtomicInteger();
    AtomicInteger checks = new AtomicInteger();
    List<Future<Boolean>> results = new ArrayList<>();
    CountDownLatch go = new CountDownLatch(1);
    for (int i = 0; i < 2; i++) {
      EtcdInitSelector t = trainer();
      results.add(
          pool.submit(
              () -> {
                go.await();
                boolean chosen =
                    t.selectFor(
                        () -> {
                          checks.incrementAndGet();
                          return pserver2Empty.get(); // "pserver 2 still reports uninitialized"
                        });
                if (chosen) {
                  Thread.sleep(300);
                  reinitializations.incrementAndGet();
                  pserver2Empty.set(false);
                  t.release();
                }
                return chosen;
              }));
    }
    go.countDown();
    int chosen = 0;
    for (Future<Boolean> f : results) {
      chosen += f.get(20, TimeUnit.SECONDS) ? 1 : 0;
    }
    assertEquals(1, chosen);
    assertEquals(1, reinitializations.get());
    assertEquals(2, checks.get(), "each trainer checked once, under the lock");
    assertEquals("1", ETCD.server().keys("/init_ps/done").get("/init_ps/done").value(), "untouched");
    assertEquals(Map.of(), ETCD.server().keys("/init_ps/lock"));
  }

  @Test
  void anUnexpectedDoneValueIsAClearErrorAndTheLockIsReleased() throws Exception {
    ETCD.server().etcdctl("put", "/init_ps/done", "2");
    EtcdInitSelector a = trainer();
    IOException e = assertThrows(IOException.class, a::select);
    assertTrue(e.getMessage().contains("/init_ps/done has unexpected value '2'"), e.getMessage());
    assertFalse(a.isHolding());
    assertEquals(Map.of(), ETCD.server().keys("/init_ps/lock"));
  }

  @Test
  void waitingForTheLockIsBoundedAndLeavesNothingBehind() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdInitSelector a = trainer();
    assertTrue(a.select());
    EtcdInitSelector b = trainer();
    long t0 = System.nanoTime();
    TimeoutException e = assertThrows(TimeoutException.class, () -> b.select(Duration.ofMillis(700)));
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    assertTrue(ms >= 650 && ms < 3000, ms + " ms");
    assertTrue(e.getMessage().contains("waited 700 ms for /init_ps/lock"), e.getMessage());
    assertEquals(1, etcd.keys("/init_ps/lock/").size(), "B's queue entry is gone");
    assertEquals(1, etcd.leases().size(), "B's session lease is revoked");
    assertTrue(a.isHolding());
  }

  @Test
  void aHolderWhoseSessionIsRevokedCannotMarkDone() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdInitSelector a = trainer();
    assertTrue(a.select());
    EtcdInitSelector b = trainer();
    Future<Boolean> bSelect = pool.submit(() -> b.select());
    try (EtcdInspector view = new EtcdInspector(etcd)) {
      Await.until(Duration.ofSeconds(10), () -> view.keys("/init_ps/lock/").size() == 2, "B queues");
    }
    // A's session lease disappears (as if A had been cut off past its TTL); B gets the lock.
    String aLease = firstHolderLease(etcd);
    etcd.etcdctl("lease", "revoke", aLease);
    assertTrue(bSelect.get(5, TimeUnit.SECONDS), "B takes over the initialization");
    Await.until(Duration.ofSeconds(5), () -> !a.isHolding(), "A notices its session is gone");
    IOException e = assertThrows(IOException.class, a::done);
    assertTrue(e.getMessage().contains("no longer the owner"), e.getMessage());
    assertFalse(etcd.keys("/init_ps/").containsKey("/init_ps/done"), "A wrote nothing");
    b.done();
    assertEquals("1", etcd.keys("/init_ps/done").get("/init_ps/done").value());
  }

  /** The lease (hex) of the lock key with the lowest create revision: the current holder. */
  private static String firstHolderLease(EtcdServer etcd) {
    EtcdServer.Kv first = null;
    for (EtcdServer.Kv kv : etcd.keys("/init_ps/lock/").values()) {
      if (first == null || kv.createRevision() < first.createRevision()) {
        first = kv;
      }
    }
    assertTrue(first != null, "someone holds the lock");
    return Long.toHexString(first.lease());
  }
}
