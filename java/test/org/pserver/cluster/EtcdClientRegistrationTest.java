package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/** pserver registration against a real etcd: slots, leases, /ps_desired, waiting, bad input. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class EtcdClientRegistrationTest {
  @RegisterExtension static final EtcdServerExtension ETCD = new EtcdServerExtension("registration");

  static final Duration DIAL = Duration.ofSeconds(1);
  static final int TTL = 2;
  static final Duration SHORT = Duration.ofSeconds(5);

  private final List<EtcdClient> open = new CopyOnWriteArrayList<>();

  @AfterEach
  void closeClients() {
    open.forEach(EtcdClient::close);
  }

  private EtcdClient pserver(int desired) {
    return pserver(ETCD.endpoint(), desired);
  }

  private EtcdClient pserver(String endpoints, int desired) {
    EtcdClient c =
        EtcdClient.builder(endpoints)
            .desiredPservers(desired)
            .dialTimeout(DIAL)
            .ttlSeconds(TTL)
            .advertiseHost("127.0.0.1")
            .backoff(Duration.ofMillis(50), Duration.ofMillis(400))
            .build();
    open.add(c);
    return c;
  }

  private static CompletableFuture<Integer> registerAsync(EtcdClient c, int port, int preferred) {
    CompletableFuture<Integer> f = new CompletableFuture<>();
    Thread t =
        new Thread(
            () -> {
              try {
                f.complete(c.register(port, preferred));
              } catch (Throwable e) {
                f.completeExceptionally(e);
              }
            },
            "register-" + port);
    t.setDaemon(true);
    t.start();
    return f;
  }

  @Test
  void threeConcurrentPserversGetExactlyIndices0To2WithNoLeakedLeases_twentyRounds() throws Exception {
    EtcdServer etcd = ETCD.server();
    // Checks inside the loop go through jetcd (an etcdctl run per check would make 20 rounds take
    // minutes on a loaded machine); etcdctl confirms the layout independently in the last round.
    try (EtcdInspector view = new EtcdInspector(etcd)) {
      for (int round = 0; round < 20; round++) {
        List<EtcdClient> cs = List.of(pserver(3), pserver(3), pserver(3));
        CountDownLatch go = new CountDownLatch(1);
        List<CompletableFuture<Integer>> fs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
          EtcdClient c = cs.get(i);
          int port = 7000 + i;
          fs.add(
              CompletableFuture.supplyAsync(
                  () -> {
                    try {
                      go.await();
                      return c.register(port);
                    } catch (Exception e) {
                      throw new IllegalStateException(e);
                    }
                  }));
        }
        go.countDown();
        Set<Integer> indices = new HashSet<>();
        for (CompletableFuture<Integer> f : fs) {
          indices.add(f.get(20, TimeUnit.SECONDS));
        }
        assertEquals(Set.of(0, 1, 2), indices, "round " + round);

        Map<String, EtcdServer.Kv> kvs = view.keys("/ps/");
        assertEquals(3, kvs.size(), "round " + round + ": " + kvs);
        for (int i = 0; i < 3; i++) {
          EtcdClient c = cs.get(i);
          int idx = c.index().getAsInt();
          EtcdServer.Kv kv = kvs.get("/ps/" + idx);
          assertEquals("127.0.0.1:" + (7000 + i), kv.value(), "round " + round);
          assertEquals(c.leaseId(), kv.lease(), "round " + round + ": the key is on the client's lease");
          assertTrue(c.isOwner());
        }
        assertEquals(3, view.leaseIds().size(), "round " + round + ": one lease per pserver, none leaked");
        assertEquals("3", view.keys("/ps_desired").get("/ps_desired").value());
        if (round == 19) {
          assertEquals(kvs, etcd.keys("/ps/"), "etcdctl sees the same keys, values and leases");
          assertEquals(3, etcd.leases().size(), "etcdctl sees the same leases");
        }

        cs.forEach(EtcdClient::close);
        open.removeAll(cs);
        assertEquals(Map.of(), view.keys("/ps/"), "round " + round + ": close() revokes");
        assertEquals(List.of(), view.leaseIds(), "round " + round);
        view.reset(); // fresh /ps_desired too, so its creation races again next round
      }
    }
  }

  @Test
  void aFourthPserverWaitsWithoutALeaseUntilOneShutsDownThenTakesTheFreedIndex() throws Exception {
    EtcdServer etcd = ETCD.server();
    List<EtcdClient> three = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      EtcdClient c = pserver(3);
      assertEquals(i, c.register(7100 + i));
      three.add(c);
    }
    EtcdClient fourth = pserver(3);
    try (LogCapture log = new LogCapture(EtcdClient.class)) {
      CompletableFuture<Integer> f = registerAsync(fourth, 7199, -1);
      Await.sleep(Duration.ofMillis(1500));
      assertFalse(f.isDone(), "all slots are taken: the fourth must wait");
      assertEquals(EtcdClient.State.REGISTERING, fourth.state());
      assertEquals(0, fourth.leaseId(), "a waiting pserver holds no lease");
      assertEquals(3, etcd.leases().size());
      assertTrue(log.contains("INFO", "all 3 pserver slots are taken"), log.lines().toString());
      int attempts = fourth.registrationAttempts.get();
      assertTrue(attempts <= 15, "backoff, not a busy loop: " + attempts + " attempts in 1.5 s");

      three.get(1).close();
      assertEquals(1, f.get(5, TimeUnit.SECONDS));
    }
    assertEquals("127.0.0.1:7199", etcd.keys("/ps/1").get("/ps/1").value());
    assertEquals(3, etcd.leases().size());
  }

  @Test
  void shutdownRevokesTheLeaseSoTheKeyDisappearsAtOnce() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdClient c = pserver(2);
    assertEquals(0, c.register(7200));
    assertEquals(Set.of("/ps/0"), etcd.keys("/ps/").keySet());
    c.shutdown();
    // No waiting: the key is gone when shutdown() returns, not TTL later.
    assertEquals(Map.of(), etcd.keys("/ps/"));
    assertEquals(List.of(), etcd.leases());
    assertEquals(EtcdClient.State.CLOSED, c.state());
    assertFalse(c.isOwner());
    c.close(); // idempotent
    assertThrows(IOException.class, () -> c.get("/x", SHORT));
    assertEquals("2", etcd.keys("/ps_desired").get("/ps_desired").value(), "/ps_desired survives its writer");
  }

  @Test
  void preferredIndexIsTakenWhenFreeAndWaitedForWhileHeld() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdClient a = pserver(3);
    assertEquals(2, a.register(7300, 2), "index 2 is free: taken although 0 and 1 are lower");

    EtcdClient b = pserver(3);
    try (LogCapture log = new LogCapture(EtcdClient.class)) {
      CompletableFuture<Integer> f = registerAsync(b, 7301, 2);
      Await.until(SHORT, () -> log.contains("INFO", "preferred index 2 is held by '127.0.0.1:7300'"), () -> log.lines().toString());
      EtcdClient c = pserver(3);
      assertEquals(0, c.register(7302), "others are not blocked by the waiting one");
      assertFalse(f.isDone());

      a.close();
      assertEquals(2, f.get(5, TimeUnit.SECONDS));
    }
    assertEquals("127.0.0.1:7301", etcd.keys("/ps/2").get("/ps/2").value());
    EtcdClient d = pserver(3);
    assertThrows(IllegalArgumentException.class, () -> d.register(7303, 3), "3 is not below /ps_desired");
  }

  @Test
  void aRememberedIndexThatIsFreeIsTakenAtOnceAlthoughLowerOnesAreFree() throws Exception {
    EtcdClient c = pserver(3);
    long t0 = System.nanoTime();
    assertEquals(2, c.registerRemembered(7310, List.of(2, 0), Duration.ofSeconds(30), null));
    assertTrue(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0) < 10_000, "no waiting for a free index");
  }

  @Test
  void aRememberedIndexHeldByALivePserverIsWaitedForBrieflyThenTheLowestFreeIsTaken() throws Exception {
    EtcdServer etcd = ETCD.server();
    EtcdClient holder = pserver(3);
    assertEquals(1, holder.register(7320, 1));
    EtcdClient c = pserver(3); // e.g. a second pserver sharing the holder's checkpoint directory
    Duration preferFor = Duration.ofMillis(1500);
    try (LogCapture log = new LogCapture(EtcdClient.class)) {
      long t0 = System.nanoTime();
      CompletableFuture<Integer> f = new CompletableFuture<>();
      Thread t = new Thread(() -> {
        try {
          f.complete(c.registerRemembered(7321, List.of(1), preferFor, null));
        } catch (Throwable e) {
          f.completeExceptionally(e);
        }
      });
      t.setDaemon(true);
      t.start();
      assertEquals(0, get(f), "after the bounded wait: the lowest free index, not a wait forever");
      long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
      assertTrue(ms >= preferFor.toMillis(), "the remembered index was preferred for a while: " + ms + " ms");
      assertTrue(log.contains("INFO", "remembered index 1 is held by '127.0.0.1:7320'; waiting up to"), log.lines().toString());
      assertTrue(log.contains("WARN", "taking the lowest free index instead"), log.lines().toString());
    }
    assertEquals("127.0.0.1:7321", etcd.keys("/ps/0").get("/ps/0").value());
    assertEquals(1, holder.index().getAsInt());
  }

  @Test
  void aRememberedIndexHeldByACrashedPredecessorIsTakenBackOnceItsLeaseExpires() throws Exception {
    EtcdServer etcd = ETCD.server();
    try (TcpProxy proxy = new TcpProxy(etcd.clientPort())) {
      EtcdClient crashed = pserver(proxy.endpoint(), 3);
      assertEquals(1, crashed.register(7330, 1));
      proxy.cut(); // like kill -9: no keep-alives, no revoke; /ps/1 lives until its lease expires

      EtcdClient restarted = pserver(3);
      long t0 = System.nanoTime();
      int i = restarted.registerRemembered(7331, List.of(1), EtcdClient.rememberedIndexWait(TTL), null);
      long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
      assertEquals(1, i, "its own index back, not the lowest free one (0)");
      assertTrue(ms >= 500, "it had to wait for the old lease to expire: " + ms + " ms");
    }
    assertEquals("127.0.0.1:7331", etcd.keys("/ps/1").get("/ps/1").value());
  }

  @Test
  void aRememberedIndexNotBelowTheDesiredCountIsIgnoredWithAWarning() throws Exception {
    EtcdClient c = pserver(2);
    try (LogCapture log = new LogCapture(EtcdClient.class)) {
      assertEquals(0, c.registerRemembered(7340, List.of(5), Duration.ofSeconds(30), null));
      assertTrue(log.contains("WARN", "remembered index 5 is not below /ps_desired=2"), log.lines().toString());
    }
    EtcdClient d = pserver(2);
    assertThrows(IllegalArgumentException.class, () -> d.registerRemembered(7341, List.of(-1), Duration.ZERO, null));
  }

  @Test
  void keyLayoutAsEtcdctlShowsIt() throws Exception {
    EtcdServer etcd = ETCD.server();
    List<EtcdClient> cs = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      EtcdClient c = pserver(3);
      c.register(7400 + i);
      cs.add(c);
    }
    cs.get(0).put("/checkpoints/0", "{\"uuid\":\"u\"}".getBytes(StandardCharsets.UTF_8), SHORT, false);

    String raw = etcd.etcdctl("get", "--prefix", "/");
    assertEquals(
        String.join(
            "\n",
            "/checkpoints/0",
            "{\"uuid\":\"u\"}",
            "/ps/0",
            "127.0.0.1:7400",
            "/ps/1",
            "127.0.0.1:7401",
            "/ps/2",
            "127.0.0.1:7402",
            "/ps_desired",
            "3",
            ""),
        raw);

    Map<String, EtcdServer.Kv> kvs = etcd.keys("/");
    assertEquals(0, kvs.get("/ps_desired").lease(), "/ps_desired is on no lease (seed bug 9)");
    assertEquals(0, kvs.get("/checkpoints/0").lease(), "checkpoint metadata is on no lease");
    Set<Long> leases = new HashSet<>();
    for (int i = 0; i < 3; i++) {
      long lease = kvs.get("/ps/" + i).lease();
      assertNotEquals(0, lease, "/ps/" + i + " is on a lease");
      assertEquals(cs.get(i).leaseId(), lease);
      leases.add(lease);
    }
    assertEquals(3, leases.size(), "one lease per pserver");
    assertEquals(leases, new HashSet<>(etcd.leaseIds()));
    String ttl = etcd.etcdctl("lease", "timetolive", Long.toHexString(cs.get(0).leaseId()));
    assertTrue(ttl.contains("granted with TTL(" + TTL + "s)"), ttl);
  }

  @Test
  void anExistingDesiredCountIsAdoptedAndNeverOverwritten() throws Exception {
    EtcdServer etcd = ETCD.server();
    etcd.etcdctl("put", "/ps_desired", "2");
    EtcdClient c = pserver(5);
    try (LogCapture log = new LogCapture(EtcdClient.class)) {
      assertEquals(0, c.register(7500));
      assertTrue(log.contains("WARN", "adopts 2"), log.lines().toString());
    }
    assertEquals(2, c.desired().getAsInt());
    assertEquals("2", etcd.keys("/ps_desired").get("/ps_desired").value());
  }

  @Test
  void nonNumericDesiredIsAClearErrorAndRegistrationWaitsWithBackoffUntilFixed() throws Exception {
    EtcdServer etcd = ETCD.server();
    etcd.etcdctl("put", "/ps_desired", "three");
    EtcdClient c = pserver(3);
    try (LogCapture log = new LogCapture(EtcdClient.class)) {
      CompletableFuture<Integer> f = registerAsync(c, 7600, -1);
      Await.sleep(Duration.ofMillis(1500));
      assertFalse(f.isDone());
      assertTrue(
          log.contains("ERROR", "/ps_desired holds 'three', which is not a positive integer"),
          log.lines().toString());
      int attempts = c.registrationAttempts.get();
      assertTrue(attempts >= 2 && attempts <= 12, "retried with backoff: " + attempts + " reads in 1.5 s");

      etcd.etcdctl("put", "/ps_desired", "3");
      assertEquals(0, f.get(5, TimeUnit.SECONDS));
    }
    etcd.etcdctl("put", "--", "/ps_desired", "-1");
    EtcdClient d = pserver(3);
    IOException e = assertThrows(IOException.class, () -> d.register(7601, -1, Duration.ofMillis(600)));
    assertTrue(e.getMessage().contains("gave up") && e.getMessage().contains("'-1'"), e.getMessage());
    assertEquals(EtcdClient.State.UNREGISTERED, d.state());
  }

  @Test
  void unreachableEndpointFailsClearlyAfterTheDialTimeoutPerAttemptWithoutBusyLooping()
      throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort(); // closed again: nothing listens there
    }
    EtcdClient c =
        EtcdClient.builder("127.0.0.1:" + port)
            .desiredPservers(1)
            .dialTimeout(Duration.ofMillis(400))
            .ttlSeconds(TTL)
            .advertiseHost("127.0.0.1")
            .backoff(Duration.ofMillis(100), Duration.ofMillis(200))
            .build();
    open.add(c);
    long t0 = System.nanoTime();
    IOException e = assertThrows(IOException.class, () -> c.register(7700, -1, Duration.ofMillis(2500)));
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    int attempts = c.registrationAttempts.get();
    assertTrue(e.getMessage().contains("gave up"), e.getMessage());
    assertTrue(
        e.getMessage().contains("no answer from etcd at 127.0.0.1:" + port + " within 400 ms"),
        e.getMessage());
    assertTrue(ms >= 2400 && ms < 4500, "gave up after " + ms + " ms");
    // Each attempt waits the dial timeout, then backs off: about 2.5 s / (0.4 s + ~0.15 s).
    assertTrue(attempts >= 3 && attempts <= 7, attempts + " attempts in " + ms + " ms");
    assertEquals(0, c.leaseId());
  }

  @Test
  void aClientThatNeverRegisteredPutsUnconditionally() throws Exception {
    EtcdClient trainer = pserver(1);
    assertArrayEquals(new byte[0], trainer.get("/nothing", SHORT));
    trainer.put("/checkpoints/7", new byte[] {1, 2}, SHORT, false);
    assertArrayEquals(new byte[] {1, 2}, trainer.get("/checkpoints/7", SHORT));
    assertThrows(IllegalStateException.class, () -> trainer.put("/x", new byte[] {1}, SHORT, true));
    assertFalse(trainer.isOwner());
    assertEquals(EtcdClient.State.UNREGISTERED, trainer.state());
  }

  @Test
  void defaultAdvertiseHostIsAnIpv4Address() {
    String host = EtcdClient.detectAdvertiseHost();
    assertTrue(host.matches("\\d+\\.\\d+\\.\\d+\\.\\d+"), host);
    assertTrue(EtcdKeys.isValidAddress(host + ":8001"));
  }

  @Test
  void badArgumentsAreRejectedUpFront() {
    assertThrows(IllegalArgumentException.class, () -> new EtcdClient("", 1, DIAL, 2));
    assertThrows(IllegalArgumentException.class, () -> new EtcdClient("ftp://x:1", 1, DIAL, 2));
    assertThrows(IllegalArgumentException.class, () -> new EtcdClient("x", 1, DIAL, 2));
    assertThrows(IllegalArgumentException.class, () -> new EtcdClient(ETCD.endpoint(), 0, DIAL, 2));
    assertThrows(IllegalArgumentException.class, () -> new EtcdClient(ETCD.endpoint(), 1, DIAL, 0));
    EtcdClient c = pserver(1);
    assertThrows(IllegalArgumentException.class, () -> c.register(0));
    assertThrows(IllegalArgumentException.class, () -> c.register(80, -2));
  }

  static <T> T get(CompletableFuture<T> f) throws Exception {
    try {
      return f.get(10, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      throw (Exception) e.getCause();
    }
  }
}
