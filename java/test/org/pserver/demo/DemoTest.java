package org.pserver.demo;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.client.InitSelector;
import org.pserver.client.PServerClient;
import org.pserver.client.PServerDirectory;
import org.pserver.service.ParameterWithConfig;
import org.pserver.testing.LocalPserver;

/** The demo's trainers. */
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
