package org.pserver.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.Seed;
import org.pserver.cluster.KVStore;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;
import org.pserver.optimizer.ParameterOptimizer;
import org.pserver.proto.paddle.AdamConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.store.AppliedPushes;
import org.pserver.store.Slot;

/** Taking, verifying, retaining and recovering checkpoints, including every way a file goes bad. */
class CheckpointManagerTest {
  @TempDir Path dir;
  LocalKVStore kv;
  CheckpointManager mgr;

  @BeforeEach
  void setUp() {
    kv = new LocalKVStore(dir);
    mgr = new CheckpointManager(dir, 3, kv, Kernels.get(), Duration.ofSeconds(3));
  }

  private static final byte[] ADAM =
      OptimizerConfig.newBuilder()
          .setOptimizer(OptimizerConfig.Optimizer.Adam)
          .setAdam(AdamConfig.newBuilder().setBeta1(0.9).setBeta2(0.999).setEpsilon(1e-8))
          .build()
          .toByteArray();

  /** Two trained parameters (float32 Adam and int64 SGD) with a dedup record. */
  private static List<Slot> slots(int steps) {
    SplittableRandom rnd = new SplittableRandom(11);
    ByteBuffer w = ByteBuffer.allocate(4 * 1000).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 1000; i++) {
      w.putFloat(4 * i, (float) rnd.nextGaussian());
    }
    ParameterOptimizer a = ParameterOptimizer.create(ElementType.FLOAT32, w, ADAM, Kernels.get());
    ParameterOptimizer b = ParameterOptimizer.create(ElementType.INT64, ByteBuffer.allocate(24), new byte[0], Kernels.get());
    ByteBuffer g = ByteBuffer.allocateDirect(4 * 1000).order(ByteOrder.nativeOrder());
    ByteBuffer gi = ByteBuffer.allocateDirect(24).order(ByteOrder.nativeOrder());
    for (int s = 0; s < steps; s++) {
      for (int i = 0; i < 1000; i++) {
        g.putFloat(4 * i, (float) rnd.nextGaussian());
      }
      a.update(ElementType.FLOAT32, g);
      gi.putLong(0, s).putLong(8, -s).putLong(16, 1);
      b.update(ElementType.INT64, gi);
    }
    AppliedPushes applied = new AppliedPushes();
    applied.record("trainer-1", 17, 1000);
    return List.of(new Slot("adam.w", a, applied), new Slot("count", b, new AppliedPushes()));
  }

  private static byte[] state(ParameterOptimizer o) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    o.writeState(Channels.newChannel(out));
    return out.toByteArray();
  }

  private List<Path> files() throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.filter(p -> p.toString().endsWith(".ckpt")).sorted().toList();
    }
  }

  @Test
  void roundTripIsBitExactAndMetadataIsTheSeedsJson() throws Exception {
    List<Slot> slots = slots(25);
    CheckpointMeta meta = mgr.take(slots);
    String json = new String(kv.get(Seed.checkpointKey(3), Duration.ofSeconds(1)), StandardCharsets.UTF_8);
    assertTrue(json.matches("\\{\"uuid\":\"[0-9a-f-]{36}\",\"path\":\"[^\"]+\",\"crc32\":\\d+,\"timestamp\":\\d+}"), json);
    java.util.zip.CRC32 crc = new java.util.zip.CRC32();
    crc.update(Files.readAllBytes(Path.of(meta.path())));
    assertEquals(crc.getValue(), meta.crc32(), "crc32 is the IEEE CRC-32 of the whole file");
    CheckpointMeta other = mgr.take(slots(26));
    assertNotEquals(meta.crc32(), other.crc32(), "different contents, different checksums (no CRC residue)");
    meta = mgr.take(slots); // the published one is again the state of `slots`

    Checkpoint cp = mgr.recover().orElseThrow();
    assertEquals(meta, cp.meta());
    assertEquals(2, cp.entries().size());
    for (int i = 0; i < 2; i++) {
      Checkpoint.Entry e = cp.entries().get(i);
      assertEquals(slots.get(i).name(), e.name());
      assertArrayEquals(state(slots.get(i).optimizer()), state(e.optimizer()), e.name());
      assertEquals(slots.get(i).optimizer().step(), e.optimizer().step());
    }
    assertTrue(cp.entries().get(0).applied().seen("trainer-1", 17, 0, 2000));
  }

  @Test
  void noMetadataMeansAFreshStart() throws Exception {
    assertTrue(mgr.recover().isEmpty());
    CheckpointException e = assertThrows(CheckpointException.class, () -> Checkpoint.load(kv, 3));
    assertEquals(Seed.CHECKPOINT_NOT_FOUND, e.getMessage());
  }

  @Test
  void retentionKeepsTheTwoNewestAndDeletesStaleTemporaries() throws Exception {
    List<Slot> slots = slots(1);
    for (int i = 0; i < 4; i++) {
      mgr.take(slots);
      Thread.sleep(15); // distinct modification times
    }
    assertEquals(2, files().size());
    Path stale = dir.resolve("3-deadbeef.ckpt.tmp");
    Files.write(stale, new byte[] {1, 2, 3});
    mgr.recover().orElseThrow();
    assertTrue(Files.notExists(stale));
  }

  /** Flips one byte in the middle of the published file. */
  private void corrupt(Path file) throws IOException {
    byte[] b = Files.readAllBytes(file);
    b[b.length / 2] ^= 0x40;
    Files.write(file, b);
  }

  @Test
  void aCorruptSoleCheckpointFailsWithTheSeedsMessageAndRefusesToStart() throws Exception {
    CheckpointMeta meta = mgr.take(slots(3));
    corrupt(Path.of(meta.path()));
    CheckpointException e = assertThrows(CheckpointException.class, () -> mgr.recover());
    assertEquals(CheckpointException.Kind.WRONG_CHECKSUM, e.kind());
    assertTrue(e.getMessage().startsWith(Seed.WRONG_CHECKSUM), e.getMessage());
    CheckpointException seedLoad = assertThrows(CheckpointException.class, () -> Checkpoint.load(kv, 3));
    assertEquals(CheckpointException.Kind.WRONG_CHECKSUM, seedLoad.kind());
  }

  @Test
  void aCorruptCheckpointFallsBackToThePreviousGoodOne() throws Exception {
    List<Slot> slots = slots(2);
    CheckpointMeta first = mgr.take(slots);
    byte[] firstState = state(slots.get(0).optimizer());
    Thread.sleep(15);
    ByteBuffer g = ByteBuffer.allocateDirect(4000).order(ByteOrder.nativeOrder());
    slots.get(0).optimizer().update(ElementType.FLOAT32, g);
    CheckpointMeta second = mgr.take(slots);
    corrupt(Path.of(second.path()));
    Checkpoint cp = mgr.recover().orElseThrow();
    assertEquals(first.uuid(), cp.meta().uuid());
    assertArrayEquals(firstState, state(cp.entries().get(0).optimizer()));
  }

  @Test
  void truncatedAndMissingFilesFallBackOrRefuse() throws Exception {
    CheckpointMeta only = mgr.take(slots(1));
    Path p = Path.of(only.path());
    byte[] b = Files.readAllBytes(p);
    Files.write(p, java.util.Arrays.copyOf(b, b.length - 100));
    assertThrows(CheckpointException.class, () -> mgr.recover());
    Files.delete(p);
    CheckpointException e = assertThrows(CheckpointException.class, () -> mgr.recover());
    assertEquals(CheckpointException.Kind.CORRUPT, e.kind());
    assertTrue(e.getMessage().contains("missing"), e.getMessage());
  }

  @Test
  void garbageOrEscapingMetadataIsRefused() throws Exception {
    mgr.take(slots(1));
    Path good = files().get(0);
    for (String bad : List.of("not json", "{\"uuid\":\"x\"}", "{\"uuid\":\"x\",\"path\":\"/etc/passwd\",\"crc32\":1,\"timestamp\":2}",
        "{\"uuid\":\"x\",\"path\":\"" + dir.resolve("../x/3-a.ckpt") + "\",\"crc32\":1,\"timestamp\":2}",
        "{\"uuid\":\"x\",\"path\":\"p\",\"crc32\":-1,\"timestamp\":2}", "[1,2]")) {
      kv.put(Seed.checkpointKey(3), bad.getBytes(StandardCharsets.UTF_8), Duration.ofSeconds(1), false);
      // The good file is still there, so recovery falls back to it (loudly) rather than failing.
      Checkpoint cp = mgr.recover().orElseThrow();
      assertEquals(good.toString(), cp.meta().path(), bad);
    }
    Files.delete(good);
    kv.put(Seed.checkpointKey(3), "{\"uuid\":\"x\",\"path\":\"/etc/passwd\",\"crc32\":1,\"timestamp\":2}".getBytes(StandardCharsets.UTF_8), Duration.ofSeconds(1), false);
    CheckpointException e = assertThrows(CheckpointException.class, () -> mgr.recover());
    assertEquals(CheckpointException.Kind.BAD_METADATA, e.kind());
  }

  @Test
  void aFileWithAValidChecksumButBrokenLayoutIsRejected() throws Exception {
    CheckpointMeta meta = mgr.take(slots(1));
    Path p = Path.of(meta.path());
    byte[] b = Files.readAllBytes(p);
    // Claim a huge state length for the first parameter, then fix both CRCs so only the layout is wrong.
    int at = CheckpointFile.HEADER_BYTES + 2 + "adam.w".length() + 1 + 4 + ADAM.length;
    ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putLong(at, 1L << 40);
    java.util.zip.CRC32C inner = new java.util.zip.CRC32C();
    inner.update(b, 0, b.length - 4);
    ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(b.length - 4, (int) inner.getValue());
    Files.write(p, b);
    java.util.zip.CRC32 whole = new java.util.zip.CRC32();
    whole.update(b);
    kv.put(Seed.checkpointKey(3), new CheckpointMeta(meta.uuid(), meta.path(), whole.getValue(), meta.timestamp()).toJson(), Duration.ofSeconds(1), false);
    CheckpointException e = assertThrows(CheckpointException.class, () -> mgr.recover());
    assertEquals(CheckpointException.Kind.CORRUPT, e.kind());
    assertTrue(e.getMessage().contains("past the end"), e.getMessage());
  }

  @Test
  void aFailedPublishLeavesThePreviousCheckpointPublished() throws Exception {
    List<Slot> slots = slots(1);
    CheckpointMeta first = mgr.take(slots);
    CheckpointManager failing = new CheckpointManager(dir, 3, new KVStore() {
      @Override
      public byte[] get(String key, Duration t) throws IOException {
        return kv.get(key, t);
      }

      @Override
      public void put(String key, byte[] v, Duration t, boolean lease) throws IOException {
        throw new IOException("store down");
      }
    }, Kernels.get(), Duration.ofSeconds(1));
    assertThrows(IOException.class, () -> failing.take(slots));
    assertEquals(first.uuid(), mgr.recover().orElseThrow().meta().uuid());
  }

  /** The file names of checkpoints, sorted: to compare with {@link #files()}. */
  private static List<Path> paths(CheckpointMeta... metas) {
    return Stream.of(metas).map(m -> Path.of(m.path())).sorted().toList();
  }

  /**
   * A complete, verifying file of index 3 that was never published here: what a crash between
   * rename and publish leaves (written by a manager whose metadata goes elsewhere).
   */
  private CheckpointMeta strayFile() throws IOException {
    Path elsewhere = dir.resolve("elsewhere");
    return new CheckpointManager(dir, 3, new LocalKVStore(elsewhere), Kernels.get(), Duration.ofSeconds(3)).take(slots(7));
  }

  /** A store that fails every put while {@code failing}, after making it when {@code applyFirst}. */
  private static final class FlakyStore implements KVStore {
    final KVStore inner;
    volatile boolean failing;
    volatile boolean applyFirst;

    FlakyStore(KVStore inner) {
      this.inner = inner;
    }

    @Override
    public byte[] get(String key, Duration t) throws IOException {
      return inner.get(key, t);
    }

    @Override
    public void put(String key, byte[] v, Duration t, boolean lease) throws IOException {
      if (failing && applyFirst) {
        inner.put(key, v, t, lease);
      }
      if (failing) {
        throw new IOException("store down");
      }
      inner.put(key, v, t, lease);
    }
  }

  @Test
  void retentionKeepsThePublishedFileAndTheOneInEffectBeforeItNotAStrayNewerOne() throws Exception {
    CheckpointMeta a = mgr.take(slots(1));
    CheckpointMeta b = mgr.take(slots(2));
    CheckpointMeta stray = strayFile(); // newer than b, never published here
    assertEquals(paths(a, b, stray), files());
    // A restart: the new manager recovers b and its first checkpoint keeps b, not the stray file.
    CheckpointManager restarted = new CheckpointManager(dir, 3, kv, Kernels.get(), Duration.ofSeconds(3));
    assertEquals(b, restarted.recover().orElseThrow().meta());
    assertEquals(b, restarted.current());
    CheckpointMeta c = restarted.take(slots(3));
    assertEquals(paths(b, c), files());
    assertEquals(c, restarted.current());
  }

  @Test
  void aFailedPublishDeletesItsFileAndLeavesThePreviousGoodPairIntact() throws Exception {
    FlakyStore flaky = new FlakyStore(kv);
    CheckpointManager m = new CheckpointManager(dir, 3, flaky, Kernels.get(), Duration.ofSeconds(3));
    CheckpointMeta a = m.take(slots(1));
    CheckpointMeta b = m.take(slots(2));
    flaky.failing = true;
    for (int i = 0; i < 3; i++) {
      assertThrows(IOException.class, () -> m.take(slots(3)));
    }
    assertEquals(paths(a, b), files(), "no file of a failed publish is left");
    assertEquals(b, m.current());
    assertEquals(b, CheckpointMeta.fromJson(kv.get(Seed.checkpointKey(3), Duration.ofSeconds(1))));
    flaky.failing = false;
    CheckpointMeta c = m.take(slots(4));
    assertEquals(paths(b, c), files(), "the previous good one is the fallback");
  }

  @Test
  void aPublishThatFailsAfterHappeningCountsAsPublished() throws Exception {
    FlakyStore flaky = new FlakyStore(kv);
    CheckpointManager m = new CheckpointManager(dir, 3, flaky, Kernels.get(), Duration.ofSeconds(3));
    CheckpointMeta a = m.take(slots(1));
    flaky.failing = true;
    flaky.applyFirst = true; // e.g. a timeout after etcd committed the put
    CheckpointMeta b = m.take(slots(2));
    assertEquals(b, CheckpointMeta.fromJson(kv.get(Seed.checkpointKey(3), Duration.ofSeconds(1))));
    assertEquals(paths(a, b), files());
    assertEquals(b, mgr.recover().orElseThrow().meta());
  }

  @Test
  void fallbackPicksTheNewestVerifyingFileOlderThanThePublishedOneAndSaysSoLoudly() throws Exception {
    ch.qos.logback.classic.Logger logger = (ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(CheckpointManager.class);
    ch.qos.logback.core.read.ListAppender<ch.qos.logback.classic.spi.ILoggingEvent> log = new ch.qos.logback.core.read.ListAppender<>();
    log.start();
    logger.addAppender(log);
    try {
      CheckpointMeta a = mgr.take(slots(1));
      CheckpointMeta b = mgr.take(slots(2));
      CheckpointMeta stray = strayFile(); // newer and verifying, but never published: not a fallback
      corrupt(Path.of(b.path()));
      CheckpointManager restarted = new CheckpointManager(dir, 3, kv, Kernels.get(), Duration.ofSeconds(3));
      Checkpoint cp = restarted.recover().orElseThrow();
      assertEquals(a.uuid(), cp.meta().uuid());
      assertEquals(a.path(), cp.meta().path());
      assertEquals(a.timestamp(), cp.meta().timestamp(), "the fallback's time is its header's creation time");
      assertTrue(log.list.stream().anyMatch(e -> e.getLevel() == ch.qos.logback.classic.Level.ERROR
          && e.getFormattedMessage().startsWith("CHECKPOINT FALLBACK") && e.getFormattedMessage().contains(a.path())),
          log.list.toString());
      assertTrue(log.list.stream().anyMatch(e -> e.getFormattedMessage().contains("not falling back to " + stray.path())),
          log.list.toString());
      // The next checkpoint keeps what was in effect (a), not the corrupt file the metadata named.
      CheckpointMeta c = restarted.take(slots(3));
      assertEquals(paths(a, c), files());
    } finally {
      logger.detachAppender(log);
    }
  }

  @Test
  void checkpointsOfOtherIndicesAreNotTouched() throws Exception {
    CheckpointManager other = new CheckpointManager(dir, 4, kv, Kernels.get(), Duration.ofSeconds(3));
    CheckpointMeta o = other.take(slots(1));
    for (int i = 0; i < 3; i++) {
      mgr.take(slots(1));
    }
    assertTrue(Files.exists(Path.of(o.path())));
    assertNotEquals(o.uuid(), mgr.recover().orElseThrow().meta().uuid());
    assertEquals(o.uuid(), other.recover().orElseThrow().meta().uuid());
    List<String> names = new ArrayList<>();
    files().forEach(f -> names.add(f.getFileName().toString()));
    assertEquals(3, names.size(), names.toString());
  }
}
