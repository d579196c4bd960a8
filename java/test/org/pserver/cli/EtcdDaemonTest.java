package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
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
import org.pserver.cluster.EtcdServer;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.PServerGrpc;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.testing.DaemonProcess;

/**
 * Real pserver daemons registered in a real etcd: the seed's key layout (checked with etcdctl), a
 * killed pserver's key expiring and its index and checkpoint being reclaimed, and an etcd outage
 * during training in which the pserver refuses writes and nothing acknowledged is lost.
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
    DaemonProcess d = DaemonProcess.serve(LOGS, List.of(),
        "--etcd-endpoint", etcd.endpoint(), "--etcd-ttl", Integer.toString(TTL), "--num-pservers", Integer.toString(desired),
        "--advertise-host", "127.0.0.1", "--checkpoint-path", dir.resolve(name).toString(), "--checkpoint-interval", "0");
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

    byIndex[0].kill();
    long t0 = System.nanoTime();
    while (etcd.keys("/ps/0").containsKey("/ps/0") && System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(10)) {
      Thread.sleep(50);
    }
    long gone = (System.nanoTime() - t0) / 1_000_000;
    assertTrue(gone <= (TTL + 1) * 1000L, "/ps/0 disappeared " + gone + " ms after kill -9 (TTL " + TTL + " s)");

    String survivor = dir.resolve(byIndex[0] == a ? "a" : "b").toString();
    DaemonProcess again = DaemonProcess.serveOn(byIndex[0].port(), LOGS, List.of(),
        "--etcd-endpoint", etcd.endpoint(), "--etcd-ttl", Integer.toString(TTL), "--num-pservers", "2",
        "--advertise-host", "127.0.0.1", "--checkpoint-path", survivor, "--checkpoint-interval", "0");
    daemons.add(again);
    assertEquals(0, indexOf(again), "a restarted pserver reclaims its own index");
    assertTrue(again.log().contains("recovered checkpoint"), again.log());
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).build()) {
      for (int i = 0; i < 8; i++) {
        long v = first(c.getParam("p" + i));
        long want = c.partition("p" + i) == 0 ? -3 : -6; // pserver 0 serves its last checkpoint
        assertEquals(want, v, "p" + i);
      }
    }
  }

  @Test
  void anEtcdOutageStopsWritesUntilItEndsAndLosesNothingAcknowledged() throws Exception {
    DaemonProcess p = pserver("solo", 1);
    String addr = "127.0.0.1:" + p.port();
    AtomicLong acked = new AtomicLong();
    AtomicBoolean stop = new AtomicBoolean();
    AtomicBoolean refusedDuringOutage = new AtomicBoolean();
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
      Thread.sleep(500);
      etcd.stop();
      ManagedChannel raw = ManagedChannelBuilder.forTarget(addr).usePlaintext().build();
      try {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(TTL + 4);
        while (System.nanoTime() < until && !refusedDuringOutage.get()) {
          try {
            PServerGrpc.newBlockingStub(raw).withDeadlineAfter(2, TimeUnit.SECONDS).sendGrad(
                org.pserver.proto.Gradient.newBuilder().setName("n").setElementType(org.pserver.proto.ElementType.INT64)
                    .setContent(com.google.protobuf.ByteString.copyFrom(i64(0).array())).build());
          } catch (StatusRuntimeException e) {
            if (e.getStatus().getCode() == Status.Code.UNAVAILABLE && String.valueOf(e.getStatus().getDescription()).contains("not accepting writes")) {
              refusedDuringOutage.set(true);
            }
          }
          Thread.sleep(100);
        }
      } finally {
        raw.shutdownNow();
      }
      assertTrue(refusedDuringOutage.get(), "writes must be refused once the lease cannot be proven; log:\n" + p.log());
      long stalled = acked.get();
      Thread.sleep(500);
      assertEquals(stalled, acked.get(), "no push is acknowledged while fenced");
      etcd.start();
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (acked.get() < stalled + 20 && System.nanoTime() < until) {
        Thread.sleep(50);
      }
      assertTrue(acked.get() >= stalled + 20, "training resumes after etcd is back; log:\n" + p.log());
      stop.set(true);
      trainer.join(60_000);
      assertEquals(-acked.get(), first(c.getParam("n")), "every acknowledged push is there, exactly once");
    }
    assertTrue(p.log().contains("ownership lost") && p.log().contains("ownership regained"), p.log());
  }
}
