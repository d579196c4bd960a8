package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.checkpoint.CheckpointMeta;
import org.pserver.client.InitSelector;
import org.pserver.client.PServerClient;
import org.pserver.client.PServerDirectory;
import org.pserver.cluster.EtcdInspector;
import org.pserver.cluster.EtcdServer;
import org.pserver.cluster.TcpProxy;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.PServerGrpc;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.testing.DaemonProcess;

/**
 * Real pserver daemons registered in a real etcd: the seed's key layout (checked with etcdctl), a
 * killed pserver's key expiring within the TTL (timed with a watch) and the restarted pserver
 * reclaiming its own index and checkpoint although a lower index is free, and etcd outages longer
 * than the TTL during training (etcd stopped; the pserver cut off until its lease really expires)
 * in which the pserver refuses writes and reports NOT_SERVING, then serves again, losing nothing
 * acknowledged.
 */
class EtcdDaemonTest {
  private static final Path LOGS = Path.of(System.getProperty("pserver.test.tmp", "target/test-tmp"), "daemon-logs");
  private static final int TTL = 2;

  @TempDir Path dir;
  EtcdServer etcd;
  final List<DaemonProcess> daemons = new ArrayList<>();

  @BeforeEach
  void startEtcd() throws Exception {
    etcd = EtcdServer.launch();
  }

  @AfterEach
  void stop() {
    daemons.forEach(DaemonProcess::close);
    etcd.close();
  }

  private DaemonProcess pserver(String name, int desired) throws Exception {
    return pserver(name, desired, etcd.endpoint(), 0);
  }

  /** A pserver daemon with checkpoints in {@code dir/name}, on {@code port} (0: a free one). */
  private DaemonProcess pserver(String name, int desired, String endpoint, int port) throws Exception {
    String[] args = {"--etcd-endpoint", endpoint, "--etcd-ttl", Integer.toString(TTL), "--num-pservers", Integer.toString(desired),
        "--advertise-host", "127.0.0.1", "--checkpoint-path", dir.resolve(name).toString(), "--checkpoint-interval", "0"};
    DaemonProcess d = port == 0 ? DaemonProcess.serve(LOGS, List.of(), args) : DaemonProcess.serveOn(port, LOGS, List.of(), args);
    daemons.add(d);
    return d;
  }

  private static int indexOf(DaemonProcess d) {
    Matcher m = Pattern.compile("pserver (\\d+) listening on").matcher(d.log());
    assertTrue(m.find(), d.log());
    return Integer.parseInt(m.group(1));
  }

  private static ByteBuffer i64(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < v.length; i++) {
      b.putLong(8 * i, v[i]);
    }
    return b;
  }

  private static long first(Parameter p) {
    return p.content().duplicate().order(ByteOrder.LITTLE_ENDIAN).getLong(0);
  }

  private static void checkpoint(String address) {
    ManagedChannel ch = ManagedChannelBuilder.forTarget(address).usePlaintext().build();
    try {
      PServerGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS).checkpoint(CheckpointRequest.getDefaultInstance());
    } finally {
      ch.shutdownNow();
    }
  }

  @Test
  void theSeedsKeyLayoutThenKillNineThenTheSameIndexAndCheckpointComeBack() throws Exception {
    DaemonProcess a = pserver("a", 2);
    DaemonProcess b = pserver("b", 2);
    Map<String, EtcdServer.Kv> keys = etcd.keys("/");
    assertEquals("2", keys.get("/ps_desired").value());
    assertEquals(0, keys.get("/ps_desired").lease(), "/ps_desired must outlive every pserver (seed bug 9)");
    DaemonProcess[] byIndex = new DaemonProcess[2];
    byIndex[indexOf(a)] = a;
    byIndex[indexOf(b)] = b;
    for (int i = 0; i < 2; i++) {
      EtcdServer.Kv kv = keys.get("/ps/" + i);
      assertEquals("127.0.0.1:" + byIndex[i].port(), kv.value());
      assertNotEquals(0, kv.lease());
    }
    assertNotEquals(keys.get("/ps/0").lease(), keys.get("/ps/1").lease(), "one lease per pserver");
    assertEquals(2, etcd.leases().size(), etcd.leases().toString());
    String raw = etcd.etcdctl("get", "--prefix", "/ps");
    assertTrue(raw.contains("/ps/0") && raw.contains("/ps/1") && raw.contains("/ps_desired"), raw);

    List<String> addrs = List.of("127.0.0.1:" + byIndex[0].port(), "127.0.0.1:" + byIndex[1].port());
    long before;
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      c.beginInitParams();
      List<ParameterWithConfig> ps = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        ps.add(new ParameterWithConfig(new Parameter("p" + i, ElementType.INT64, i64(0, 0)), new byte[0]));
      }
      c.initParams(ps);
      c.finishInitParams();
      List<Gradient> g = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        g.add(new Gradient("p" + i, ElementType.INT64, i64(3, 3)));
      }
      c.sendGrads(g);
      checkpoint(addrs.get(0));
      checkpoint(addrs.get(1));
      for (int i = 0; i < 2; i++) {
        EtcdServer.Kv meta = etcd.keys("/checkpoints/" + i).get("/checkpoints/" + i);
        CheckpointMeta m = CheckpointMeta.fromJson(meta.value().getBytes(StandardCharsets.UTF_8));
        assertTrue(m.path().contains(i + "-" + m.uuid()), m.path());
        assertEquals(0, meta.lease());
      }
      c.sendGrads(g); // after the checkpoint: lost with the crash below
      before = first(c.getParam("p0"));
    }
    assertEquals(-6, before);

    // Index 0 is shut down cleanly (its lease revoked, /ps/0 gone at once), then the pserver of
    // index 1 is killed and restarted at once: with 0 free, only its record of its own index brings
    // it back to 1 rather than the lowest free slot, and it may have to wait for its predecessor's
    // lease to expire first.
    DaemonProcess victim = byIndex[1];
    String victimDir = victim == a ? "a" : "b";
    String otherDir = victim == a ? "b" : "a";
    assertEquals(0, byIndex[0].terminate(Duration.ofSeconds(30)));
    try (EtcdInspector view = new EtcdInspector(etcd)) {
      assertFalse(view.keys("/ps/").containsKey("/ps/0"), "SIGTERM revokes the lease at once");
      CompletableFuture<Long> gone = view.deletion("/ps/1");
      victim.kill();
      long killedAt = System.nanoTime();
      DaemonProcess again = pserver(victimDir, 2, etcd.endpoint(), victim.port());
      long ms = TimeUnit.NANOSECONDS.toMillis(gone.get(30, TimeUnit.SECONDS) - killedAt);
      assertTrue(ms <= (TTL + 1) * 1000L, "/ps/1 disappeared " + ms + " ms after kill -9 (TTL " + TTL + " s)");
      assertEquals(1, indexOf(again), "a restarted pserver reclaims its own index, not the lowest free one; log:\n" + again.log());
      assertTrue(again.log().contains("recovered checkpoint"), again.log());
      DaemonProcess other = pserver(otherDir, 2, etcd.endpoint(), byIndex[0].port());
      assertEquals(0, indexOf(other), other.log());
    }
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).build()) {
      for (int i = 0; i < 8; i++) {
        long v = first(c.getParam("p" + i));
        // Index 1 serves its last checkpoint; index 0 took a final one when it was shut down.
        long want = c.partition("p" + i) == 1 ? -3 : -6;
        assertEquals(want, v, "p" + i);
      }
    }
  }

  /** The daemon's gRPC health status ("" service), or null if it does not answer. */
  private static ServingStatus health(ManagedChannel ch) {
    try {
      return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(2, TimeUnit.SECONDS)
          .check(HealthCheckRequest.getDefaultInstance()).getStatus();
    } catch (StatusRuntimeException e) {
      return null;
    }
  }

  /** Whether a raw push is refused because the pserver is fenced. */
  private static boolean refused(ManagedChannel ch) {
    try {
      PServerGrpc.newBlockingStub(ch).withDeadlineAfter(2, TimeUnit.SECONDS).sendGrad(
          org.pserver.proto.Gradient.newBuilder().setName("n").setElementType(org.pserver.proto.ElementType.INT64)
              .setContent(com.google.protobuf.ByteString.copyFrom(i64(0).array())).build());
      return false;
    } catch (StatusRuntimeException e) {
      return e.getStatus().getCode() == Status.Code.UNAVAILABLE
          && String.valueOf(e.getStatus().getDescription()).contains("not accepting writes");
    }
  }

  private static void await(Duration timeout, BooleanSupplier condition, Supplier<String> what) throws InterruptedException {
    long until = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > until) {
        fail("not within " + timeout.toMillis() + " ms: " + what.get());
      }
      Thread.sleep(50);
    }
  }

  /**
   * One outage, from {@code start} (nanoTime) until {@code end} is called TTL + 2 s later: the
   * pserver must refuse writes and report NOT_SERVING within the TTL (plus slack), stay so (no push
   * acknowledged) until the end, then serve again and acknowledge pushes.
   */
  private static void outage(long start, Runnable end, ManagedChannel ch, AtomicLong acked, DaemonProcess p)
      throws InterruptedException {
    await(Duration.ofSeconds(TTL + 4), () -> refused(ch) && health(ch) == ServingStatus.NOT_SERVING,
        () -> "writes refused and NOT_SERVING once the lease cannot be proven; log:\n" + p.log());
    Thread.sleep(200); // a reply sent just before the fence may still be on its way
    long stalled = acked.get();
    long until = start + TimeUnit.SECONDS.toNanos(TTL + 2);
    while (System.nanoTime() < until) {
      assertEquals(ServingStatus.NOT_SERVING, health(ch), "NOT_SERVING for the whole outage");
      Thread.sleep(Math.max(1, Math.min(300, TimeUnit.NANOSECONDS.toMillis(until - System.nanoTime()))));
    }
    assertEquals(stalled, acked.get(), "no push is acknowledged while fenced");
    assertTrue(refused(ch));
    end.run();
    await(Duration.ofSeconds(20), () -> health(ch) == ServingStatus.SERVING && acked.get() >= stalled + 20,
        () -> "serving and training again after the outage; acked " + acked.get() + ", log:\n" + p.log());
  }

  @Test
  void etcdOutagesLongerThanTheTtlStopWritesUntilTheyEndAndLoseNothingAcknowledged() throws Exception {
    try (TcpProxy link = new TcpProxy(etcd.clientPort()); EtcdInspector view = new EtcdInspector(etcd)) {
      DaemonProcess p = pserver("solo", 1, link.endpoint(), 0);
      String addr = "127.0.0.1:" + p.port();
      AtomicLong acked = new AtomicLong();
      AtomicBoolean stop = new AtomicBoolean();
      ManagedChannel raw = ManagedChannelBuilder.forTarget(addr).usePlaintext().build();
      try (PServerClient c = PServerClient.builder(PServerDirectory.of(List.of(addr))).selector(InitSelector.fixed(true))
          .backoff(Duration.ofMillis(20), Duration.ofMillis(200)).retryBudget(Duration.ofSeconds(60)).build()) {
        c.beginInitParams();
        c.initParam(new ParameterWithConfig(new Parameter("n", ElementType.INT64, i64(0)), new byte[0]));
        c.finishInitParams();
        Thread trainer = new Thread(() -> {
          while (!stop.get()) {
            c.sendGrads(List.of(new Gradient("n", ElementType.INT64, i64(1))));
            acked.incrementAndGet();
          }
        });
        trainer.start();
        await(Duration.ofSeconds(20), () -> acked.get() >= 20, () -> "training starts; log:\n" + p.log());
        long lease = view.keys("/ps/0").get("/ps/0").lease();

        // 1. etcd itself is down for longer than the TTL. etcd 3.4 extends every lease when it
        // comes back, so the pserver finds its claim intact and resumes on the same lease.
        long stoppedAt = System.nanoTime();
        etcd.stop();
        outage(stoppedAt, () -> {
          try {
            etcd.start();
          } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }, raw, acked, p);

        // 2. The pserver is cut off from a running etcd: its lease truly expires and /ps/0 goes
        // away; once the link is back it claims the index again on a new lease.
        long cutAt = System.nanoTime();
        link.cut();
        await(Duration.ofSeconds(TTL + 2), () -> !view.keys("/ps/").containsKey("/ps/0"), () -> "the lease expires");
        outage(cutAt, link::restore, raw, acked, p);
        EtcdServer.Kv now = view.keys("/ps/0").get("/ps/0");
        assertEquals(addr, now.value());
        assertNotEquals(lease, now.lease(), "re-registered on a new lease after the old one expired");

        stop.set(true);
        trainer.join(60_000);
        assertEquals(-acked.get(), first(c.getParam("n")), "every acknowledged push is there, exactly once");
      } finally {
        raw.shutdownNow();
      }
      String log = p.log();
      assertEquals(2, count(log, "ownership lost"), log);
      assertEquals(2, count(log, "ownership regained"), log);
    }
  }

  private static int count(String s, String fragment) {
    int n = 0;
    for (int i = s.indexOf(fragment); i >= 0; i = s.indexOf(fragment, i + 1)) {
      n++;
    }
    return n;
  }
}
