package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The trainers' pserver list: waits for /ps_desired, then follows registrations by watch. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class EtcdListerTest {
  @RegisterExtension static final EtcdServerExtension ETCD = new EtcdServerExtension("lister");

  /** Far below the seed's 10 s poll: changes must arrive through the watch. */
  /**
   * How soon a change in /ps/ must be seen: far below the seed's 10 s poll, with room for a loaded
   * 2-core machine.
   */
  static final Duration PROMPT = Duration.ofSeconds(3);
  static final Duration RECOVERY = Duration.ofSeconds(15);

  private final List<AutoCloseable> open = new CopyOnWriteArrayList<>();

  @AfterEach
  void closeAll() throws Exception {
    for (AutoCloseable c : open) {
      c.close();
    }
  }

  private EtcdLister lister(String endpoints) {
    EtcdLister l = new EtcdLister(endpoints, Duration.ofMillis(500), Duration.ofMillis(50), Duration.ofMillis(300));
    open.add(l);
    return l;
  }

  private EtcdClient pserver(int desired) {
    EtcdClient c =
        EtcdClient.builder(ETCD.endpoint())
            .desiredPservers(desired)
            .dialTimeout(Duration.ofSeconds(1))
            .ttlSeconds(2)
            .advertiseHost("127.0.0.1")
            .backoff(Duration.ofMillis(50), Duration.ofMillis(300))
            .build();
    open.add(c);
    return c;
  }

  /** Records changes as "+i addr", "-i addr", "~i old->new", and the delivering threads. */
  static final class Changes implements EtcdLister.Listener {
    final List<String> seen = new CopyOnWriteArrayList<>();
    final List<String> threads = new CopyOnWriteArrayList<>();

    @Override
    public void serverChanged(EtcdLister.Change c) {
      threads.add(Thread.currentThread().getName());
      seen.add(
          c.isAdded()
              ? "+" + c.index() + " " + c.current()
              : c.isRemoved() ? "-" + c.index() + " " + c.previous() : "~" + c.index() + " " + c.previous() + "->" + c.current());
    }

    @Override
    public String toString() {
      return seen.toString();
    }
  }

  @Test
  void waitsForPsDesiredThenFollowsRegistrationsAddressChangesAndRemovalsByWatch() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdLister lister = lister(etcd.endpoint());
    Changes changes = new Changes();
    lister.addListener(changes);
    lister.start();
    assertThrows(TimeoutException.class, () -> lister.awaitDesired(Duration.ofMillis(600)));
    assertTrue(lister.desired().isEmpty());

    EtcdClient p0 = pserver(3);
    EtcdClient p1 = pserver(3);
    EtcdClient p2 = pserver(3);
    assertEquals(0, p0.register(8000));
    assertEquals(3, lister.awaitDesired(Duration.ofSeconds(5)));
    assertEquals(1, p1.register(8001));
    assertEquals(2, p2.register(8002));
    Map<Integer, String> all = lister.awaitAll(Duration.ofSeconds(5));
    assertEquals(Map.of(0, "127.0.0.1:8000", 1, "127.0.0.1:8001", 2, "127.0.0.1:8002"), all);
    Await.until(PROMPT, () -> changes.seen.size() == 3, changes::toString);
    assertEquals(List.of(new EtcdLister.Server(0, "127.0.0.1:8000"), new EtcdLister.Server(1, "127.0.0.1:8001"), new EtcdLister.Server(2, "127.0.0.1:8002")), lister.servers());

    // A pserver goes away: its key is revoked at once and the watch reports it.
    long t0 = System.nanoTime();
    p1.close();
    Await.until(PROMPT, () -> !lister.snapshot().containsKey(1), "removal of 1 seen");
    Await.until(PROMPT, () -> changes.seen.contains("-1 127.0.0.1:8001"), changes::toString);
    assertThrows(TimeoutException.class, () -> lister.awaitAll(Duration.ofMillis(100)));

    // It comes back on another port, preferring its old index.
    EtcdClient p1b = pserver(3);
    assertEquals(1, p1b.register(8101, 1));
    Await.until(PROMPT, () -> "127.0.0.1:8101".equals(lister.snapshot().get(1)), () -> "re-registration seen: " + changes);
    Await.until(PROMPT, () -> changes.seen.contains("+1 127.0.0.1:8101"), changes::toString);

    // An address rewritten in place is a change, not a removal.
    etcd.etcdctl("put", "/ps/2", "127.0.0.1:8202");
    Await.until(PROMPT, () -> changes.seen.contains("~2 127.0.0.1:8002->127.0.0.1:8202"), changes::toString);
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    assertTrue(ms < 5000, "three changes followed in " + ms + " ms");
    assertTrue(changes.threads.stream().allMatch(t -> t.startsWith("pserver-lister-events-")), changes.threads.toString());
  }

  @Test
  void garbageUnderPsIsIgnoredWithAWarningAndNeverBecomesAZeroEntry() throws Exception {
    EtcdServer etcd = ETCD.server();
    etcd.etcdctl("put", "/ps_desired", "2");
    etcd.etcdctl("put", "/ps/x", "127.0.0.1:1");
    etcd.etcdctl("put", "/ps/01", "127.0.0.1:2");
    etcd.etcdctl("put", "/ps/7", "127.0.0.1:3"); // not below /ps_desired
    etcd.etcdctl("put", "/ps/1", ":8001"); // the seed tests' value: no host
    etcd.etcdctl("put", "/ps/", "127.0.0.1:4");
    etcd.etcdctl("put", "/psfoo", "whatever");
    try (LogCapture log = new LogCapture(EtcdLister.class)) {
      EtcdLister lister = lister(etcd.endpoint());
      Changes changes = new Changes();
      lister.addListener(changes);
      lister.start();
      assertEquals(2, lister.awaitDesired(Duration.ofSeconds(5)));
      Await.sleep(Duration.ofMillis(300));
      assertEquals(Map.of(), lister.snapshot(), "nothing valid yet, and no zero-value entry at 0");

      etcd.etcdctl("put", "/ps/0", "not an address");
      etcd.etcdctl("put", "/ps/1", "127.0.0.1:8001");
      Await.until(PROMPT, () -> lister.snapshot().containsKey(1), changes::toString);
      assertEquals(Map.of(1, "127.0.0.1:8001"), lister.snapshot());

      etcd.etcdctl("put", "/ps/1", "garbage");
      Await.until(PROMPT, () -> lister.snapshot().isEmpty(), "a valid entry turned to garbage counts as removed");
      Await.until(PROMPT, () -> changes.seen.size() == 2, changes::toString);
      assertEquals(List.of("+1 127.0.0.1:8001", "-1 127.0.0.1:8001"), List.copyOf(changes.seen));

      for (String fragment :
          List.of("'/ps/x'", "'/ps/01'", "index 7 is not below", "/ps/1=':8001'", "/ps/0='not an address'", "/ps/1='garbage'")) {
        assertTrue(log.contains("WARN", fragment), fragment + " in " + log.lines());
      }
      assertFalse(log.lines().stream().anyMatch(l -> l.contains("psfoo")), log.lines().toString());
    }
  }

  @Test
  void invalidPsDesiredIsAnErrorAndTheListerWaitsForAValidOne() throws Exception {
    EtcdServer etcd = ETCD.server();
    etcd.etcdctl("put", "/ps_desired", "many");
    etcd.etcdctl("put", "/ps/0", "127.0.0.1:8000");
    try (LogCapture log = new LogCapture(EtcdLister.class)) {
      EtcdLister lister = lister(etcd.endpoint()).start();
      assertThrows(TimeoutException.class, () -> lister.awaitDesired(Duration.ofMillis(500)));
      assertTrue(log.contains("ERROR", "/ps_desired holds 'many', which is not a positive integer"), log.lines().toString());
      assertEquals(Map.of(), lister.snapshot());

      etcd.etcdctl("put", "/ps_desired", "1");
      assertEquals(Map.of(0, "127.0.0.1:8000"), lister.awaitAll(Duration.ofSeconds(5)));

      etcd.etcdctl("put", "/ps_desired", "4");
      Await.until(PROMPT, () -> log.contains("ERROR", "changed to '4' while trainers run; keeping 1"), () -> log.lines().toString());
      assertEquals(1, lister.desired().getAsInt());
    }
  }

  @Test
  void afterAWatchFailureItListsAgainAndCatchesUpWithWhatChangedMeanwhile() throws Exception {
    EtcdServer etcd = ETCD.server();
    etcd.etcdctl("put", "/ps_desired", "3");
    etcd.etcdctl("put", "/ps/0", "127.0.0.1:8000");
    etcd.etcdctl("put", "/ps/1", "127.0.0.1:8001");
    TcpProxy proxy = new TcpProxy(etcd.clientPort());
    open.add(proxy);
    EtcdLister lister = lister(proxy.endpoint());
    Changes changes = new Changes();
    lister.addListener(changes);
    lister.start();
    lister.awaitDesired(Duration.ofSeconds(5));
    Await.until(PROMPT, () -> lister.snapshot().size() == 2, changes::toString);
    // Make sure the watch is live on the proxied connection, so the cut breaks an open stream.
    etcd.etcdctl("put", "/ps/2", "127.0.0.1:7002");
    Await.until(PROMPT, () -> lister.snapshot().size() == 3, changes::toString);
    etcd.etcdctl("del", "/ps/2");
    Await.until(PROMPT, () -> lister.snapshot().size() == 2, changes::toString);

    proxy.cut();
    etcd.etcdctl("put", "/ps/1", "127.0.0.1:8101");
    etcd.etcdctl("del", "/ps/0");
    etcd.etcdctl("put", "/ps/2", "127.0.0.1:8002");
    long rev = etcd.keys("/ps/2").get("/ps/2").modRevision();
    // Compact the history the old watch would resume from: re-listing must not depend on it.
    etcd.etcdctl("compact", Long.toString(rev));
    proxy.restore();

    Await.until(
        RECOVERY,
        () -> lister.snapshot().equals(Map.of(1, "127.0.0.1:8101", 2, "127.0.0.1:8002")),
        () -> "caught up after the outage: " + lister.snapshot() + " " + changes);
    Await.until(
        PROMPT,
        () ->
            changes.seen.containsAll(
                List.of("-0 127.0.0.1:8000", "~1 127.0.0.1:8001->127.0.0.1:8101", "+2 127.0.0.1:8002")),
        changes::toString);

    // And the new watch works.
    etcd.etcdctl("put", "/ps/0", "127.0.0.1:8200");
    Await.until(PROMPT, () -> lister.snapshot().size() == 3, changes::toString);
  }

  @Test
  void closeWakesWaitersAndIsIdempotent() throws Exception {
    EtcdLister lister = lister(ETCD.endpoint()).start();
    Thread closer =
        new Thread(
            () -> {
              Await.sleep(Duration.ofMillis(300));
              lister.close();
            });
    closer.start();
    assertThrows(IllegalStateException.class, () -> lister.awaitAll(Duration.ofSeconds(10)));
    closer.join();
    lister.close();
    EtcdLister notStarted = lister(ETCD.endpoint());
    assertThrows(IllegalStateException.class, () -> notStarted.awaitDesired(Duration.ofMillis(10)));
  }
}
