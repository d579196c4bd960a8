package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.client.InitSelector;
import org.pserver.client.PServerClient;
import org.pserver.client.PServerDirectory;
import org.pserver.client.Partitioner;
import org.pserver.proto.CheckpointMeta;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.PServerGrpc;
import org.pserver.demo.Demo;
import org.pserver.rpc.DropReplies;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.testing.DaemonProcess;

/**
 * Training survives faults, end to end: pservers are separate processes, trainers push
 * continuously, and a pserver is killed and restarted, replies are lost, a trainer restarts.
 */
class ClusterFaultTest {
  private static final Path LOGS = Path.of(System.getProperty("pserver.test.tmp", "target/test-tmp"), "daemon-logs");

  @TempDir Path dir;
  final List<DaemonProcess> daemons = new ArrayList<>();

  @AfterEach
  void stop() {
    daemons.forEach(DaemonProcess::close);
  }

  private String[] args(int i, String interval) {
    return new String[] {"--index", Integer.toString(i), "--checkpoint-path", dir.resolve("ps" + i).toString(), "--checkpoint-interval", interval};
  }

  /**
   * The demo's training with a pserver killed (SIGKILL) and restarted in the middle: nobody
   * intervenes, the restarted pserver comes back from its last checkpoint (taken every second),
   * the trainers retry through the gap, and the model still reaches the demo's accuracy bar.
   */
  @Test
  void theDemoSurvivesAPserverKilledAndRestartedMidTraining() throws Exception {
    List<String> addrs = new ArrayList<>();
    for (int i = 0; i < 2; i++) {
      DaemonProcess d = DaemonProcess.serve(LOGS, List.of(), args(i, "1s"));
      daemons.add(d);
      addrs.add(d.target());
    }
    ByteArrayOutputStream progress = new ByteArrayOutputStream();
    Demo.Options o = Demo.Options.defaults(dir.resolve("demo")).withDuration(Duration.ofSeconds(30)).withPservers(addrs);
    CompletableFuture<Demo.Result> run = CompletableFuture.supplyAsync(() -> {
      try {
        return Demo.run(o, new PrintStream(progress, true, StandardCharsets.UTF_8));
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    Thread.sleep(10_000);
    DaemonProcess victim = daemons.get(1);
    victim.kill();
    Thread.sleep(1_000);
    DaemonProcess back = DaemonProcess.serveOn(victim.port(), LOGS, List.of(), args(1, "1s"));
    daemons.add(back);
    Demo.Result r = run.get(120, TimeUnit.SECONDS);
    String out = progress.toString(StandardCharsets.UTF_8);
    assertTrue(back.log().contains("recovered checkpoint"), back.log());
    assertEquals(List.of(), r.failures(), out);
    assertTrue(r.updates() > 100, out);
    assertTrue(r.accuracy() >= Demo.ACCURACY_BAR, "accuracy " + r.accuracy() + " < " + Demo.ACCURACY_BAR + "\n" + out);
  }

  /**
   * Issue 6's "the trainers' retries do not double-apply" across a kill -9, made exact. The victim
   * pserver applies every push and loses every reply (fault injection at 100%), so each trainer's
   * first push is applied and then retried again and again. Once the victim has applied all of
   * them, a Checkpoint RPC saves them (with the record of what was applied), the victim is killed
   * with pushes in flight and restarted from that checkpoint without the fault; the retries reach
   * the new process. Every push adds 1 to its own element of an integer counter (SGD, lr 1, a
   * gradient of -1 at element = step), so each element must end exactly 1: 2 would be the
   * checkpointed push applied again, 0 an acknowledged push lost.
   */
  @Test
  void retriesOfPushesInACheckpointAreNotAppliedAgainAfterAKillAndRestart() throws Exception {
    DaemonProcess steady = DaemonProcess.serve(LOGS, List.of(), args(0, "0"));
    daemons.add(steady);
    DaemonProcess victim = DaemonProcess.serve(LOGS, List.of("-D" + DropReplies.PROPERTY + "=1.0"), args(1, "0"));
    daemons.add(victim);
    List<String> addrs = List.of(steady.target(), victim.target());
    int trainers = 3, steps = 15;
    List<String> onVictim = new ArrayList<>(), onSteady = new ArrayList<>();
    for (int i = 0; onVictim.size() < trainers || onSteady.size() < trainers; i++) {
      String name = "count" + i;
      List<String> to = Partitioner.partition(name, 2) == 1 ? onVictim : onSteady;
      if (to.size() < trainers) {
        to.add(name);
      }
    }
    List<String> all = new ArrayList<>(onVictim);
    all.addAll(onSteady);
    try (PServerClient init = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      assertTrue(init.beginInitParams());
      for (String n : all) {
        init.initParam(new ParameterWithConfig(new Parameter(n, ElementType.INT64, i64(new long[steps])), new byte[0]));
      }
      init.finishInitParams();
    }

    AtomicIntegerArray acknowledged = new AtomicIntegerArray(trainers);
    ExecutorService pool = Executors.newFixedThreadPool(trainers);
    try (PServerClient reader = PServerClient.builder(PServerDirectory.of(addrs)).build()) {
      List<Future<?>> fs = new ArrayList<>();
      for (int t = 0; t < trainers; t++) {
        int trainer = t;
        fs.add(pool.submit(() -> {
          try (PServerClient c = client(addrs, false)) {
            for (int s = 0; s < steps; s++) {
              long[] g = new long[steps];
              g[s] = -1;
              c.sendGrads(List.of(new Gradient(onVictim.get(trainer), ElementType.INT64, i64(g)),
                  new Gradient(onSteady.get(trainer), ElementType.INT64, i64(g))));
              acknowledged.incrementAndGet(trainer);
            }
          }
          return null;
        }));
      }
      // Every trainer's first push applied by the victim, none acknowledged.
      long until = System.nanoTime() + 60_000_000_000L;
      while (!onVictim.stream().allMatch(n -> longs(reader.getParam(n))[0] == 1)) {
        assertTrue(System.nanoTime() < until, "the victim did not apply the first pushes; log:\n" + victim.log());
        Thread.sleep(20);
      }
      ManagedChannel ch = ManagedChannelBuilder.forTarget(victim.target()).usePlaintext().build();
      CheckpointMeta meta;
      try {
        meta = PServerGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS).checkpoint(CheckpointRequest.getDefaultInstance());
      } finally {
        ch.shutdownNow();
      }
      victim.kill();
      for (int t = 0; t < trainers; t++) {
        assertEquals(0, acknowledged.get(t), "trainer " + t + " had a push acknowledged by a pserver that drops every reply");
      }
      DaemonProcess back = DaemonProcess.serveOn(victim.port(), LOGS, List.of(), args(1, "0"));
      daemons.add(back);
      assertTrue(back.log().contains("recovered checkpoint " + meta.getUuid()), back.log());
      for (Future<?> f : fs) {
        f.get(120, TimeUnit.SECONDS);
      }
      long[] ones = new long[steps];
      java.util.Arrays.fill(ones, 1);
      for (String n : all) {
        assertArrayEquals(ones, longs(reader.getParam(n)), n + (onVictim.contains(n) ? " (on the restarted pserver)" : ""));
      }
    } finally {
      pool.shutdownNow();
    }
  }

  private static long[] longs(Parameter p) {
    long[] v = new long[p.content().remaining() / 8];
    p.content().duplicate().order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(v);
    return v;
  }

  private static ByteBuffer i64(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < v.length; i++) {
      b.putLong(8 * i, v[i]);
    }
    return b;
  }

  /**
   * Five percent of push replies are lost by pserver processes after they applied the push, and
   * one trainer restarts half way (a new client, which must not re-initialize). With
   * deterministic SGD gradients on integer counters the final values are exact.
   */
  @Test
  void lostRepliesAcrossProcessesAndATrainerRestartLoseNothingAndApplyNothingTwice() throws Exception {
    List<String> addrs = new ArrayList<>();
    for (int i = 0; i < 2; i++) {
      DaemonProcess d = DaemonProcess.serve(LOGS, List.of("-D" + DropReplies.PROPERTY + "=0.05"), args(i, "0"));
      daemons.add(d);
      addrs.add(d.target());
    }
    List<String> names = List.of("a", "b", "c", "d", "e", "f");
    try (PServerClient init = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      assertTrue(init.beginInitParams());
      for (String n : names) {
        init.initParam(new ParameterWithConfig(new Parameter(n, ElementType.INT64, i64(new long[8])), new byte[0]));
      }
      init.finishInitParams();
    }
    int trainers = 4, steps = 120;
    ExecutorService pool = Executors.newFixedThreadPool(trainers);
    try {
      List<Future<?>> fs = new ArrayList<>();
      for (int t = 0; t < trainers; t++) {
        int trainer = t;
        fs.add(pool.submit(() -> {
          PServerClient c = client(addrs, trainer == 2);
          for (int s = 1; s <= steps; s++) {
            if (trainer == 2 && s == steps / 2) {
              c.close(); // the trainer process restarts: a new client, a new trainer id
              c = client(addrs, true);
              assertFalse(c.beginInitParams(), "a restarted trainer must not initialize again");
            }
            List<Gradient> grads = new ArrayList<>();
            for (int k = 0; k < names.size(); k++) {
              long[] g = new long[8];
              java.util.Arrays.fill(g, (trainer + 1) * (k + 1));
              grads.add(new Gradient(names.get(k), ElementType.INT64, i64(g)));
            }
            c.sendGrads(grads);
          }
          c.close();
          return null;
        }));
      }
      for (Future<?> f : fs) {
        f.get(180, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdownNow();
    }
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).build()) {
      List<Parameter> got = c.getParams(names);
      for (int k = 0; k < names.size(); k++) {
        long[] want = new long[8];
        java.util.Arrays.fill(want, -(long) steps * (k + 1) * (1 + 2 + 3 + 4));
        long[] have = new long[8];
        got.get(k).content().duplicate().order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(have);
        assertArrayEquals(want, have, names.get(k));
      }
    }
    for (DaemonProcess d : daemons) {
      assertTrue(d.log().contains("FAULT INJECTION"), d.log());
    }
  }

  private static PServerClient client(List<String> addrs, boolean selected) {
    return PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(selected))
        .backoff(Duration.ofMillis(5), Duration.ofMillis(100)).build();
  }
}
