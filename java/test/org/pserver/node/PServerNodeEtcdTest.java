package org.pserver.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.cluster.EtcdServerExtension;

/**
 * Which index an etcd-registered node takes, against a real etcd: the indices its checkpoint
 * directory served are preferred, never waited for without bound, and ignored when they do not fit
 * the job.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class PServerNodeEtcdTest {
  @RegisterExtension static final EtcdServerExtension ETCD = new EtcdServerExtension("node");
  private static final int TTL = 2;

  @TempDir Path dir;
  private final List<PServerNode> nodes = new CopyOnWriteArrayList<>();

  @AfterEach
  void stopNodes() {
    nodes.forEach(PServerNode::abort);
  }

  private PServerNode start(Path checkpoints, int desired) throws Exception {
    PServerNode.Config c = PServerNode.Config.standalone(-1, checkpoints)
        .withEtcd(ETCD.endpoint(), desired, TTL)
        .withAdvertiseHost("127.0.0.1");
    // Bounded, so that a node that would wait forever fails the test instead of hanging it.
    CompletableFuture<PServerNode> f = CompletableFuture.supplyAsync(() -> {
      try {
        return PServerNode.start(c);
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    });
    try {
      PServerNode n = f.get(30, TimeUnit.SECONDS);
      nodes.add(n);
      return n;
    } catch (ExecutionException e) {
      throw (Exception) e.getCause().getCause();
    }
  }

  @Test
  void twoNodesSharingACheckpointDirectoryBothRegister() throws Exception {
    Path shared = dir.resolve("shared");
    PServerNode a = start(shared, 2);
    assertEquals(0, a.index());
    assertEquals(List.of(0), PServerNode.rememberedIndices(shared));

    // B finds index 0 recorded, held by the live A: it prefers it for a while, then takes 1.
    long t0 = System.nanoTime();
    PServerNode b = start(shared, 2);
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    assertEquals(1, b.index());
    assertTrue(ms >= 3000, "index 0 was preferred for about TTL + 2 s first: " + ms + " ms");
    assertEquals(List.of(1, 0), PServerNode.rememberedIndices(shared), "one line per index served");
  }

  @Test
  void aStaleRecordFromAJobWithMorePserversIsIgnored() throws Exception {
    Path d = dir.resolve("stale");
    Files.createDirectories(d);
    Files.writeString(d.resolve(PServerNode.INDEX_FILE), "5\nnot-an-index\n", StandardCharsets.UTF_8);
    assertEquals(List.of(5), PServerNode.rememberedIndices(d));

    PServerNode n = start(d, 2);
    assertEquals(0, n.index());
    assertEquals("0\n", Files.readString(d.resolve(PServerNode.INDEX_FILE)), "the stale record is dropped");
  }

  @Test
  void anEarlierSingleNumberFileIsStillRead() throws Exception {
    Path d = dir.resolve("old");
    Files.createDirectories(d);
    Files.writeString(d.resolve(PServerNode.INDEX_FILE), "1", StandardCharsets.UTF_8);
    PServerNode n = start(d, 2);
    assertEquals(1, n.index(), "the recorded index, free, rather than the lowest free one");
  }
}
