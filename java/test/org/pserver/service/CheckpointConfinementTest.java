package org.pserver.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.checkpoint.CheckpointMeta;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;

/**
 * Parameter names never become paths: whatever the names, checkpoints are written and read only
 * inside the checkpoint directory, under names made of the index and a UUID, and the names come
 * back from recovery byte for byte.
 */
class CheckpointConfinementTest {
  /** Names that would escape, or confuse, a file system if they ever reached one. */
  private static final List<String> HOSTILE = List.of(
      "../../etc/x", "/abs", "a/../../b", "nul\0char", "..", ".", "/", "a\\..\\..\\b", "%2F..%2Fescape",
      "3-00000000-0000-0000-0000-000000000000.ckpt", "%2Fcheckpoints%2F3", "~/x", "C:\\Windows\\x", "line\nbreak",
      "x".repeat(300), "\u00e9/\u2028/\ud83d\ude00");

  @TempDir Path sandbox;

  private static ByteBuffer f32(float... v) {
    ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (float x : v) {
      b.putFloat(x);
    }
    return b.flip();
  }

  private static List<Path> everything(Path root) throws Exception {
    try (Stream<Path> s = Files.walk(root)) {
      return s.filter(p -> !p.equals(root)).sorted().toList();
    }
  }

  @Test
  void hostileNamesStayInsideTheCheckpointDirectory() throws Exception {
    Path dir = sandbox.resolve("a").resolve("b").resolve("checkpoints");
    CheckpointManager cm = new CheckpointManager(dir, 3, new LocalKVStore(dir), Kernels.get(), Duration.ofSeconds(3));
    Service s = new Service(new Service.Options(3, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), cm, null, Service.WriteGate.OPEN);
    for (int i = 0; i < HOSTILE.size(); i++) {
      s.initParam(new ParameterWithConfig(new Parameter(HOSTILE.get(i), ElementType.FLOAT32, f32(i, -i)), new byte[0]));
    }
    s.finishInitParams();
    for (String name : HOSTILE) {
      s.sendGrad(new Gradient(name, ElementType.FLOAT32, f32(1, 1)), null, 0, 0);
    }
    CheckpointMeta first = s.checkpoint();
    CheckpointMeta second = s.checkpoint();
    s.shutdown();

    // Only the checkpoint directory and its ancestors inside the sandbox exist outside it, and in it
    // only "<index>-<uuid>.ckpt" files and the metadata file.
    List<Path> outside = new ArrayList<>(everything(sandbox));
    outside.removeIf(p -> p.startsWith(dir) && !p.equals(dir));
    assertEquals(List.of(sandbox.resolve("a"), sandbox.resolve("a/b"), dir), outside);
    for (Path p : everything(dir)) {
      assertEquals(dir, p.getParent(), "no subdirectory: " + p);
      String n = p.getFileName().toString();
      assertTrue(n.equals("%2Fcheckpoints%2F3") || n.matches("3-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\.ckpt"), n);
    }
    for (CheckpointMeta m : List.of(first, second)) {
      assertEquals(dir, Path.of(m.path()).getParent());
    }

    Checkpoint back = new CheckpointManager(dir, 3, new LocalKVStore(dir), Kernels.get(), Duration.ofSeconds(3)).recover().orElseThrow();
    List<String> names = new ArrayList<>();
    back.entries().forEach(e -> names.add(e.name()));
    assertEquals(HOSTILE.stream().sorted().toList(), names.stream().sorted().toList());
    Service restored = new Service(new Service.Options(3, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), null, back, Service.WriteGate.OPEN);
    for (int i = 0; i < HOSTILE.size(); i++) {
      ByteBuffer w = restored.getParam(HOSTILE.get(i), Long.MAX_VALUE).content();
      assertEquals(i - 1, w.getFloat(0), HOSTILE.get(i));
      assertEquals(-i - 1, w.getFloat(4), HOSTILE.get(i));
    }
  }
}
