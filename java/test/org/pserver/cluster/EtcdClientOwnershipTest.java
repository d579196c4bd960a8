package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Lease loss, fencing, re-registration and takeover, with real etcd outages and partitions. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class EtcdClientOwnershipTest {
  @RegisterExtension static final EtcdServerExtension ETCD = new EtcdServerExtension("ownership");

  static final int TTL = 2;
  static final long TTL_NANOS = TimeUnit.SECONDS.toNanos(TTL);
  /** How soon a deleted key or a revoked lease must end ownership: seen by a watch, not by expiry. */
  static final Duration PROMPT = Duration.ofMillis(1500);
  static final Duration SHORT = Duration.ofSeconds(2);
  /** Generous: after an outage gRPC reconnects with its own exponential backoff (1 s, 1.6 s, ...). */
  static final Duration RECOVERY = Duration.ofSeconds(15);

  private final List<AutoCloseable> open = new CopyOnWriteArrayList<>();

  @AfterEach
  void closeAll() throws Exception {
    for (AutoCloseable c : open) {
      c.close();
    }
  }

  private EtcdClient pserver(String endpoints) {
    EtcdClient c =
        EtcdClient.builder(endpoints)
            .desiredPservers(2)
            .dialTimeout(Duration.ofMillis(500))
            .ttlSeconds(TTL)
            .advertiseHost("127.0.0.1")
            .backoff(Duration.ofMillis(50), Duration.ofMillis(300))
            .build();
    open.add(c);
    return c;
  }

  /** A cuttable way to {@code etcd}, closed after the test. */
  private TcpProxy proxyTo(EtcdServer etcd) throws IOException {
    TcpProxy p = new TcpProxy(etcd.clientPort());
    open.add(p);
    return p;
  }

  /** A pserver registered as index 0 through {@code endpoints}, with checkpoint metadata "a1". */
  private EtcdClient indexZeroWithACheckpoint(String endpoints, int port, RecordingListener events)
      throws Exception {
    EtcdClient c = pserver(endpoints);
    c.addListener(events);
    assertEquals(0, c.register(port));
    c.put("/checkpoints/0", utf8("a1"), SHORT, false);
    return c;
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void etcdDownLongerThanTheTtl_ownershipEndsBeforeTheLeaseCouldExpire_thenIsRegained()
      throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdClient c = pserver(etcd.endpoint());
    RecordingListener events = new RecordingListener();
    c.addListener(events);
    assertEquals(0, c.register(7800));
    c.put("/checkpoints/0", utf8("before"), SHORT, false);
    Await.sleep(Duration.ofMillis(1000)); // a few keep-alives

    // Poll while etcd goes down: remember the newest acknowledged keep-alive while we are owner.
    CompletableFuture<Void> stopping = CompletableFuture.runAsync(etcd::stop);
    long lastSent = c.lastKeepAliveSentNanos();
    while (c.isOwner()) {
      lastSent = Math.max(lastSent, c.lastKeepAliveSentNanos());
      Thread.sleep(1);
    }
    long notOwnerAt = System.nanoTime();
    long afterLastKeepAlive = notOwnerAt - lastSent;
    assertTrue(
        afterLastKeepAlive < TTL_NANOS,
        "isOwner() must turn false before the lease can expire: "
            + TimeUnit.NANOSECONDS.toMillis(afterLastKeepAlive)
            + " ms after the last acknowledged keep-alive was sent (TTL "
            + TTL
            + " s)");
    assertTrue(afterLastKeepAlive > TTL_NANOS / 2, "not absurdly early either");
    assertThrows(NotOwnerException.class, () -> c.put("/checkpoints/0", utf8("during"), SHORT, false));
    assertThrows(NotOwnerException.class, () -> c.put("/checkpoints/0", utf8("during"), SHORT, true));
    assertEquals(Duration.ZERO, c.ownershipRemaining());
    Await.until(SHORT, () -> events.events.contains("lost 0"), events::toString);
    stopping.get(15, TimeUnit.SECONDS);

    Await.sleep(Duration.ofMillis(TTL * 1000 + 500)); // down for longer than the TTL
    etcd.start();
    Await.until(RECOVERY, c::isOwner, () -> "ownership regained; events " + events);
    Await.until(SHORT, () -> events.events.size() == 2, events::toString);
    assertEquals(List.of("lost 0", "regained 0"), events.events);
    assertTrue(events.threads.stream().allMatch(t -> t.startsWith("pserver-etcd-events-")), events.threads.toString());
    assertEquals(0, c.index().getAsInt(), "same index");
    c.put("/checkpoints/0", utf8("after"), SHORT, false);
    Map<String, EtcdServer.Kv> kvs = etcd.keys("/");
    assertEquals("after", kvs.get("/checkpoints/0").value());
    assertEquals("127.0.0.1:7800", kvs.get("/ps/0").value());
    assertEquals(c.leaseId(), kvs.get("/ps/0").lease());
    assertEquals(1, etcd.leases().size(), "no leaked lease after the outage");
  }

  @Test
  void deletingOrOverwritingTheKeyEndsOwnershipPromptlyAndTheSameIndexIsReclaimed() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdClient c = pserver(etcd.endpoint());
    RecordingListener events = new RecordingListener();
    c.addListener(events);
    assertEquals(0, c.register(7801));
    long lease = c.leaseId();

    // The lease stays alive, so only the watch on /ps/0 can notice. The clock starts when the
    // delete is done (etcdctl has returned): starting a Go binary on a loaded 2-core machine can
    // take most of a second by itself. The loss is awaited in the listener's record, not by
    // polling isOwner(): the pserver may re-register between two polls.
    etcd.etcdctl("del", "/ps/0");
    Await.until(PROMPT, () -> events.events.contains("lost 0"), () -> "the watch notices the delete; events " + events);
    Await.until(RECOVERY, c::isOwner, () -> "re-registered; events " + events);
    assertEquals(lease, c.leaseId(), "the lease was alive: reused");
    assertEquals(lease, etcd.keys("/ps/0").get("/ps/0").lease());

    etcd.etcdctl("lease", "revoke", Long.toHexString(lease));
    Await.until(PROMPT, () -> events.events.stream().filter("lost 0"::equals).count() == 2,
        () -> "a revoked lease ends ownership; events " + events);
    Await.until(RECOVERY, c::isOwner, () -> "re-registered on a new lease; events " + events);
    assertNotEquals(lease, c.leaseId());
    assertEquals(c.leaseId(), etcd.keys("/ps/0").get("/ps/0").lease());
    assertEquals(0, c.index().getAsInt());
    Await.until(SHORT, () -> events.events.size() == 4, events::toString);
    assertEquals(List.of("lost 0", "regained 0", "lost 0", "regained 0"), events.events);
    assertEquals(1, etcd.leases().size());
  }

  @Test
  void anotherPserverClaimsTheIndexWhileThisOneIsCutOff_itReportsTakeoverAndClaimsNothing()
      throws Exception {
    EtcdServer etcd = ETCD.server();
    TcpProxy proxy = proxyTo(etcd);
    RecordingListener events = new RecordingListener();
    EtcdClient a = indexZeroWithACheckpoint(proxy.endpoint(), 7900, events);

    EtcdClient b = pserver(etcd.endpoint());
    CompletableFuture<Integer> bIndex =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                return b.register(7901, 0); // waits for index 0
              } catch (Exception e) {
                throw new IllegalStateException(e);
              }
            });

    long cutAt = System.nanoTime();
    proxy.cut();
    Await.until(Duration.ofSeconds(TTL), () -> !a.isOwner(), "A notices within the TTL");
    assertTrue(System.nanoTime() - cutAt < TTL_NANOS);
    assertThrows(NotOwnerException.class, () -> a.put("/checkpoints/0", utf8("a2"), SHORT, false));

    // etcd expires A's lease after the TTL; B, waiting for index 0, takes it.
    assertEquals(0, bIndex.get(10, TimeUnit.SECONDS));
    b.put("/checkpoints/0", utf8("b1"), SHORT, false);

    proxy.restore();
    Await.until(
        RECOVERY,
        () -> events.events.contains("taken 0 by 127.0.0.1:7901"),
        () -> "A reports the takeover; events " + events);
    assertEquals(List.of("lost 0", "taken 0 by 127.0.0.1:7901"), events.events);
    assertEquals(EtcdClient.State.TAKEN_OVER, a.state());
    assertFalse(a.isOwner());
    assertThrows(NotOwnerException.class, () -> a.put("/checkpoints/0", utf8("a3"), SHORT, false));
    assertEquals(0, a.leaseId(), "A revoked its lease");
    Await.sleep(Duration.ofMillis(500));
    Map<String, EtcdServer.Kv> kvs = etcd.keys("/");
    assertEquals("127.0.0.1:7901", kvs.get("/ps/0").value());
    assertFalse(kvs.containsKey("/ps/1"), "A did not silently take another index: " + kvs);
    assertEquals("b1", kvs.get("/checkpoints/0").value());
    assertEquals(List.of(b.leaseId()), etcd.leaseIds());
  }

  @Test
  void aSuccessorThatCheckpointedAndLeftIsATakeover_theCutOffPserverDoesNotReclaimOverItsWrites()
      throws Exception {
    EtcdServer etcd = ETCD.server();
    TcpProxy proxy = proxyTo(etcd);
    RecordingListener events = new RecordingListener();
    EtcdClient a = indexZeroWithACheckpoint(proxy.endpoint(), 7970, events);

    proxy.cut();
    Await.until(Duration.ofSeconds(TTL), () -> !a.isOwner(), "A notices within the TTL");
    // B takes index 0 once A's lease has expired (loading A's checkpoint "a1"), acknowledges
    // pushes, publishes a checkpoint of them, and goes away: /ps/0 is free again.
    EtcdClient b = pserver(etcd.endpoint());
    assertEquals(0, b.register(7971, 0));
    b.put("/checkpoints/0", utf8("b1"), SHORT, false);
    b.close();
    assertFalse(etcd.keys("/ps/").containsKey("/ps/0"));

    // A comes back to a free /ps/0. Claiming it with its in-memory state would silently drop B's
    // acknowledged, checkpointed updates: it must stop instead (the daemon exits with code 3).
    proxy.restore();
    Await.until(
        RECOVERY,
        () -> a.state() == EtcdClient.State.TAKEN_OVER,
        () -> "A reports the takeover; state " + a.state() + ", events " + events);
    Await.until(SHORT, () -> events.events.size() == 2, events::toString);
    assertEquals("lost 0", events.events.get(0));
    assertTrue(events.events.get(1).startsWith("taken 0 by "), events.toString());
    assertTrue(events.events.get(1).contains("/checkpoints/0"), events.toString());
    assertFalse(a.isOwner());
    assertThrows(NotOwnerException.class, () -> a.put("/checkpoints/0", utf8("a2"), SHORT, false));
    Map<String, EtcdServer.Kv> kvs = etcd.keys("/");
    assertFalse(kvs.containsKey("/ps/0"), "A claimed nothing: " + kvs);
    assertEquals("b1", kvs.get("/checkpoints/0").value());
    assertEquals(List.of(), etcd.leaseIds(), "A revoked the lease it had granted for the attempt");
  }

  @Test
  void itsOwnCheckpointWriteWhoseReplyWasLostIsNotMistakenForASuccessors() throws Exception {
    EtcdServer etcd = ETCD.server();
    TcpProxy proxy = proxyTo(etcd);
    RecordingListener events = new RecordingListener();
    EtcdClient a = indexZeroWithACheckpoint(proxy.endpoint(), 7980, events);

    proxy.muteReplies(); // the put reaches etcd, its answer does not come back
    IOException unknown =
        assertThrows(IOException.class, () -> a.put("/checkpoints/0", utf8("a2"), SHORT, false));
    assertFalse(unknown instanceof NotOwnerException, unknown.toString());
    Await.until(Duration.ofSeconds(5), () -> "a2".equals(etcd.keys("/checkpoints/0").get("/checkpoints/0").value()), "it landed");
    etcd.etcdctl("del", "/ps/0"); // so that A has to claim /ps/0 again, not find its claim intact
    Await.until(Duration.ofSeconds(TTL + 1), () -> !a.isOwner(), "no answers: A stops claiming ownership");
    proxy.cut();
    proxy.restore();

    Await.until(RECOVERY, a::isOwner, () -> "A regains index 0; state " + a.state() + ", events " + events);
    Await.until(SHORT, () -> events.events.size() == 2, events::toString);
    assertEquals(List.of("lost 0", "regained 0"), events.events);
    a.put("/checkpoints/0", utf8("a3"), SHORT, false);
    assertEquals("a3", etcd.keys("/checkpoints/0").get("/checkpoints/0").value());
  }

  @Test
  void aFencedPutWritesNothingWhenTheClaimChangedEvenBeforeTheWatchSaysSo() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdClient c = pserver(etcd.endpoint());
    assertEquals(0, c.register(7950));
    c.put("/checkpoints/0", utf8("mine"), SHORT, false);
    c.suspendKeyWatchForTest();

    // Someone else re-creates /ps/0 (as a successor would after our lease expired).
    etcd.etcdctl("del", "/ps/0");
    etcd.etcdctl("put", "/ps/0", "127.0.0.9:8001");
    assertTrue(c.isOwner(), "our keep-alives still work and the watch is suspended");

    NotOwnerException e =
        assertThrows(NotOwnerException.class, () -> c.put("/checkpoints/0", utf8("stale"), SHORT, false));
    assertTrue(e.getMessage().contains("nothing was written"), e.getMessage());
    assertEquals("mine", etcd.keys("/checkpoints/0").get("/checkpoints/0").value());
    assertFalse(c.isOwner(), "a failed fence ends ownership at once");
    Await.until(RECOVERY, () -> c.state() == EtcdClient.State.TAKEN_OVER, () -> "state " + c.state());
    assertArrayEquals(utf8("mine"), c.get("/checkpoints/0", SHORT), "reads are never fenced");
  }
}
