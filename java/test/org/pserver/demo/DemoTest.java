package org.pserver.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.client.InitSelector;
import org.pserver.client.PServerClient;
import org.pserver.client.PServerDirectory;
import org.pserver.cluster.EtcdKeys;
import org.pserver.cluster.EtcdServer;
import org.pserver.service.ParameterWithConfig;
import org.pserver.testing.LocalPserver;
import org.w3c.dom.Document;

/** The demo: the {@code pserver demo} command itself, runs through etcd, and its trainers. */
class DemoTest {
  @TempDir Path dir;
  final List<AutoCloseable> open = new ArrayList<>();

  @AfterEach
  void close() throws Exception {
    for (AutoCloseable c : open) {
      c.close();
    }
  }

  /**
   * {@code pserver demo} as a user runs it, in its own JVM, shortened: 2 pservers and 4 trainers
   * in standalone mode for 20 s. It must exit 0 (trained to the accuracy bar, no trainer failed),
   * write the loss curve as a well-formed SVG with a curve in it, and report accuracy and kernels.
   */
  @Test
  void pserverDemoTrainsToTheBarAndWritesTheLossCurve() throws Exception {
    Path out = dir.resolve("demo");
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Xmx1g", "-Dorg.bytedeco.javacpp.cachedir=" + System.getProperty("org.bytedeco.javacpp.cachedir", "target/javacpp-cache"),
        "-cp", System.getProperty("java.class.path"), "org.pserver.cli.Main",
        "demo", "--duration", "20s", "--out", out.toString());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    CompletableFuture<String> output = CompletableFuture.supplyAsync(() -> {
      try {
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    });
    if (!p.waitFor(90, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("pserver demo still running after 90 s");
    }
    String log = output.get(10, TimeUnit.SECONDS);
    assertEquals(0, p.exitValue(), log);
    assertTrue(log.matches("(?s).*accuracy 0\\.\\d{3} against the teacher's labels.*bar 0\\.60: met.*"), log);
    assertTrue(log.matches("(?s).*\\nkernels \\S+.*loss curve: .*loss\\.svg.*"), log);

    Path svg = out.resolve("loss.svg");
    assertTrue(Files.isRegularFile(svg), log);
    DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
    f.setNamespaceAware(true);
    Document d = f.newDocumentBuilder().parse(svg.toFile());
    assertEquals("svg", d.getDocumentElement().getLocalName());
    assertEquals("http://www.w3.org/2000/svg", d.getDocumentElement().getNamespaceURI());
    assertEquals(1, d.getElementsByTagNameNS("http://www.w3.org/2000/svg", "polyline").getLength(), "the loss curve");
  }

  /**
   * A second {@code pserver demo --etcd} against the same etcd: the first run left the job's keys
   * there ({@code /checkpoints/<i>} naming files the second run deletes, {@code /ps_desired},
   * {@code /init_ps/done}). The demo owns the job when it starts its own pservers, so it clears
   * them and says so; without that, recovery refuses metadata whose file is gone.
   */
  @Test
  void theDemoRunsAgainThroughTheSameEtcd() throws Exception {
    EtcdServer etcd = EtcdServer.launch("demo");
    open.add(etcd);
    Demo.Options o = new Demo.Options(2, 2, Duration.ofSeconds(3), 16, 7, dir.resolve("demo"), List.of(), etcd.endpoint());
    for (int run = 1; run <= 2; run++) {
      ByteArrayOutputStream progress = new ByteArrayOutputStream();
      Demo.Result r = Demo.run(o, new PrintStream(progress, true, StandardCharsets.UTF_8));
      String out = progress.toString(StandardCharsets.UTF_8);
      assertEquals(List.of(), r.failures(), "run " + run + "\n" + out);
      assertTrue(r.updates() > 0, "run " + run + "\n" + out);
      assertTrue(out.contains("owns the job in etcd") && out.contains(EtcdKeys.INIT_DONE), out);
      assertTrue(etcd.keys(EtcdKeys.CHECKPOINT_PREFIX).size() == 2, "run " + run + " checkpointed both pservers");
    }
  }

  /**
   * A trainer's copy must stay readable while its pull is retrying: re-initializing a pserver
   * that came back empty reads the copy ({@link DemoTrainer#current}) from the client's threads
   * while the trainer thread waits in the pull. The pull held the trainer's lock for its whole
   * fetch, so the two waited for each other forever.
   */
  @Test
  void aPserverThatCameBackEmptyDuringAPullIsReinitializedFromTheTrainersCopy() throws Exception {
    List<LocalPserver> ps = new ArrayList<>();
    for (int i = 0; i < 2; i++) {
      LocalPserver p = new LocalPserver(i, dir, null);
      open.add(p);
      ps.add(p);
    }
    DemoStats stats = new DemoStats(1);
    DemoTrainer[] self = new DemoTrainer[1];
    PServerClient client = PServerClient.builder(PServerDirectory.of(List.of(ps.get(0).address(), ps.get(1).address())))
        .selector(InitSelector.fixed(true)).backoff(Duration.ofMillis(10), Duration.ofMillis(100)).maxAttempts(100_000).retryBudget(Duration.ofSeconds(60))
        .reinitSource(Mlp.NAMES, name -> self[0].current(name)).build();
    open.add(0, client);
    DemoTrainer trainer = new DemoTrainer(0, client, Demo.task(7), Demo.model(), 8, Demo.optimizerConfig(), () -> stats.updates() >= 2, stats);
    self[0] = trainer;
    assertTrue(client.beginInitParams());
    trainer.initializeParameters(7);

    ps.get(1).crash();
    Thread t = new Thread(trainer, "trainer-0");
    t.setDaemon(true);
    t.start(); // its first pull retries while pserver 1 is down
    Thread.sleep(500);
    ParameterWithConfig copy = CompletableFuture.supplyAsync(() -> trainer.current("fc1.w")).get(10, TimeUnit.SECONDS);
    assertNotNull(copy, "the trainer has a copy");

    ps.get(1).start(false); // back empty: the pull re-initializes it from the copy
    t.join(60_000);
    assertTrue(!t.isAlive(), "the trainer is stuck");
    assertNull(trainer.failure());
    assertTrue(ps.get(1).service.isInitialized());
    assertTrue(stats.updates() >= 2);
  }
}
