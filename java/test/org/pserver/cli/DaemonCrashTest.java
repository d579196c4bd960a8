package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.cluster.EtcdServer;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.Gradient;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.Parameter;
import org.pserver.proto.ParameterWithConfig;
import org.pserver.proto.SendGradsRequest;
import org.pserver.testing.DaemonProcess;

/**
 * Crash safety of a real daemon process: SIGKILL in the middle of training and in the middle of a
 * checkpoint, SIGTERM's final checkpoint (with pushes in flight; failing: exit code 4; during
 * start-up), and refusing to start on a corrupt checkpoint.
 *
 * <p>The model: six int64 counters trained with SGD at learning rate 1, so every value is an exact
 * sum of the gradients applied and "exactly the last checkpoint" can be checked bit for bit.
 */
class DaemonCrashTest {
  private static final int PARAMS = 6;
  private static final Path LOGS = Path.of(System.getProperty("pserver.test.tmp", "target/test-tmp"), "daemon-logs");

  @TempDir Path dir;

  private String[] args() {
    return new String[] {"--checkpoint-path", dir.toString(), "--checkpoint-interval", "0", "--log-level", "info"};
  }

  private DaemonProcess start(List<String> jvmFlags) throws Exception {
    return DaemonProcess.serve(LOGS, jvmFlags, args());
  }

  private static ByteString longs(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (long x : v) {
      b.putLong(x);
    }
    return ByteString.copyFrom(b.array());
  }

  private static final class Client implements AutoCloseable {
    final ManagedChannel ch;
    final PServerGrpc.PServerBlockingStub stub;

    Client(DaemonProcess d) {
      ch = ManagedChannelBuilder.forTarget(d.target()).usePlaintext().build();
      stub = PServerGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS);
    }

    void init() {
      for (int i = 0; i < PARAMS; i++) {
        stub.initParam(ParameterWithConfig.newBuilder()
            .setParam(Parameter.newBuilder().setName("p" + i).setElementType(ElementType.INT64).setContent(longs(new long[64])))
            .build());
      }
      stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    }

    /** One push of gradient {@code k} to every parameter. */
    void push(long k) {
      SendGradsRequest.Builder b = SendGradsRequest.newBuilder();
      long[] g = new long[64];
      java.util.Arrays.fill(g, k);
      for (int i = 0; i < PARAMS; i++) {
        b.addGrads(Gradient.newBuilder().setName("p" + i).setElementType(ElementType.INT64).setContent(longs(g)));
      }
      stub.sendGrads(b.build());
    }

    List<ByteString> values() {
      GetParamsRequest.Builder r = GetParamsRequest.newBuilder();
      for (int i = 0; i < PARAMS; i++) {
        r.addNames("p" + i);
      }
      List<ByteString> out = new ArrayList<>();
      stub.getParams(r.build()).getParamsList().forEach(p -> out.add(p.getContent()));
      return out;
    }

    @Override
    public void close() {
      ch.shutdownNow();
    }
  }

  private static long first(List<ByteString> values) {
    return values.get(0).asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).getLong(0);
  }

  private List<Path> files(String suffix) throws Exception {
    try (Stream<Path> s = Files.list(dir)) {
      return s.filter(p -> p.toString().endsWith(suffix)).toList();
    }
  }

  @Test
  void killDuringTrainingServesExactlyTheLastPublishedCheckpoint() throws Exception {
    List<ByteString> published;
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      c.init();
      for (int k = 1; k <= 10; k++) {
        c.push(k);
      }
      c.stub.checkpoint(CheckpointRequest.getDefaultInstance());
      published = c.values();
      assertEquals(-55, first(published));
      for (int k = 1; k <= 7; k++) {
        c.push(100);
      }
      assertEquals(-755, first(c.values()));
      d.kill();
    }
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      assertTrue(d.log().contains("recovered checkpoint"), d.log());
      assertEquals(published, c.values(), "exactly the last published checkpoint");
      c.push(1); // and it trains on from there
      assertEquals(-56, first(c.values()));
    }
  }

  @Test
  void killInTheMiddleOfACheckpointLeavesThePreviousOneLoadable() throws Exception {
    List<ByteString> published;
    // 400 ms after each parameter: a checkpoint of six takes 2.4 s, long enough to kill it halfway.
    try (DaemonProcess d = start(List.of("-Dpserver.fault.checkpointPauseMillis=400")); Client c = new Client(d)) {
      c.init();
      c.push(3);
      c.stub.checkpoint(CheckpointRequest.getDefaultInstance());
      published = c.values();
      c.push(5);
      CompletableFuture<?> second = CompletableFuture.runAsync(() -> c.stub.checkpoint(CheckpointRequest.getDefaultInstance()));
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (files(".tmp").isEmpty() && System.nanoTime() < until) {
        Thread.sleep(20);
      }
      assertFalse(files(".tmp").isEmpty(), "the second checkpoint should be in progress");
      d.kill();
      assertTrue(second.handle((v, e) -> e != null).get(10, TimeUnit.SECONDS), "the killed checkpoint cannot have succeeded");
    }
    assertEquals(1, files(".ckpt").size());
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      assertEquals(published, c.values());
      assertTrue(files(".tmp").isEmpty(), "the half-written checkpoint is cleaned up");
    }
  }

  @Test
  void sigtermTakesAFinalCheckpointWithEveryAcknowledgedUpdateAndExitsZero() throws Exception {
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      c.init();
      for (int k = 1; k <= 20; k++) {
        c.push(k); // each returned: acknowledged
      }
      assertEquals(0, d.terminate(Duration.ofSeconds(30)), d.log());
      assertTrue(d.log().contains("stopped"), d.log());
    }
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      List<ByteString> v = c.values();
      for (ByteString b : v) {
        long[] want = new long[64];
        java.util.Arrays.fill(want, -210);
        assertArrayEquals(longs(want).toByteArray(), b.toByteArray());
      }
    }
  }

  private static void assertAllEqual(long want, List<ByteString> values) {
    long[] all = new long[64];
    java.util.Arrays.fill(all, want);
    for (ByteString b : values) {
      assertArrayEquals(longs(all).toByteArray(), b.toByteArray());
    }
  }

  @Test
  void sigtermWithPushesInFlightCheckpointsEveryAcknowledgedPush() throws Exception {
    AtomicLong acknowledged = new AtomicLong();
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      c.init();
      int pushers = 4;
      ExecutorService pool = Executors.newFixedThreadPool(pushers);
      try {
        List<Future<Status.Code>> ends = new ArrayList<>();
        for (int t = 0; t < pushers; t++) {
          ends.add(pool.submit(() -> {
            while (true) {
              try {
                c.push(1);
              } catch (StatusRuntimeException e) {
                return e.getStatus().getCode(); // refused or cut off: not acknowledged
              }
              acknowledged.incrementAndGet();
            }
          }));
        }
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (acknowledged.get() < 100 && System.nanoTime() < until) {
          Thread.sleep(5);
        }
        assertTrue(acknowledged.get() >= 100, "pushes under way");
        assertEquals(0, d.terminate(Duration.ofSeconds(60)), d.log()); // while they go on
        for (Future<Status.Code> f : ends) {
          assertEquals(Status.Code.UNAVAILABLE, f.get(30, TimeUnit.SECONDS));
        }
      } finally {
        pool.shutdownNow();
      }
    }
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      assertAllEqual(-acknowledged.get(), c.values());
    }
  }

  @Test
  void aFailedFinalCheckpointExitsWithCodeFourAndSaysSo() throws Exception {
    Path ckpt = dir.resolve("ckpt");
    String[] args = {"--checkpoint-path", ckpt.toString(), "--checkpoint-interval", "0"};
    try (DaemonProcess d = DaemonProcess.serve(LOGS, List.of(), args); Client c = new Client(d)) {
      c.init();
      c.stub.checkpoint(CheckpointRequest.getDefaultInstance());
      c.push(1); // acknowledged, in no checkpoint yet
      // The checkpoint directory turns into a file, so the final checkpoint cannot be written.
      // (Tests run as root: taking write permission away would not stop the daemon.)
      Files.move(ckpt, dir.resolve("moved"));
      Files.writeString(ckpt, "not a directory");
      assertEquals(ServeCommand.EXIT_FINAL_CHECKPOINT_FAILED, d.terminate(Duration.ofSeconds(30)), d.log());
      assertTrue(d.log().contains("FINAL CHECKPOINT FAILED"), d.log());
      assertTrue(d.log().contains("stopped WITHOUT A FINAL CHECKPOINT, exit code 4"), d.log());
    }
  }

  @Test
  void sigtermDuringStartUpStopsInOrderRatherThanByTheJvmDefault() throws Exception {
    try (EtcdServer etcd = EtcdServer.launch()) {
      etcd.etcdctl("put", "/ps_desired", "1");
      etcd.etcdctl("put", "/ps/0", "127.0.0.1:1"); // the only slot, taken on no lease: start-up waits
      try (DaemonProcess d = DaemonProcess.launch(LOGS, List.of(), "--etcd-endpoint", etcd.endpoint(), "--num-pservers", "1",
          "--advertise-host", "127.0.0.1", "--checkpoint-path", dir.toString())) {
        assertTrue(d.awaitLog("pserver slots are taken", Duration.ofSeconds(60)), d.log());
        assertEquals(0, d.terminate(Duration.ofSeconds(30)), d.log()); // the JVM's default would be 143
        assertTrue(d.log().contains("signal received during start-up: stopped before serving"), d.log());
        assertFalse(d.log().contains("listening on"), d.log());
      }
      assertEquals(List.of(), etcd.leases(), "no lease left behind");
    }
  }

  @Test
  void refusesToStartOnACorruptCheckpointInsteadOfStartingEmpty() throws Exception {
    try (DaemonProcess d = start(List.of()); Client c = new Client(d)) {
      c.init();
      c.push(1);
      c.stub.checkpoint(CheckpointRequest.getDefaultInstance());
      d.kill();
    }
    Path file = files(".ckpt").get(0);
    byte[] b = Files.readAllBytes(file);
    b[b.length / 3] ^= 1;
    Files.write(file, b);
    try (DaemonProcess d = DaemonProcess.launch(LOGS, List.of(), args())) {
      assertEquals(2, d.awaitExit(Duration.ofSeconds(30)), d.log());
      assertTrue(d.log().contains("checkpoint file checksum validation failed"), d.log());
      assertTrue(d.log().contains("refusing to start"), d.log());
    }
  }

  @Test
  void flagsCanComeFromPserverEnvironmentVariables() throws Exception {
    Path envDir = dir.resolve("from-env");
    try (DaemonProcess d = DaemonProcess.launch(LOGS,
        java.util.Map.of("PSERVER_CHECKPOINT_PATH", envDir.toString(), "PSERVER_INDEX", "7", "PSERVER_LOG_LEVEL", "debug"), List.of())) {
      assertTrue(d.awaitLog("listening on", Duration.ofSeconds(60)), d.log());
      assertTrue(d.log().contains("pserver 7 listening on"), d.log());
      assertTrue(d.log().contains("checkpoints in " + envDir), d.log());
      Client c = new Client(d);
      c.init();
      c.stub.checkpoint(CheckpointRequest.getDefaultInstance());
      c.close();
      try (Stream<Path> s = Files.list(envDir)) {
        assertTrue(s.anyMatch(p -> p.getFileName().toString().startsWith("7-")));
      }
    }
  }
}
