package org.pserver.checkpoint;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.UUID;
import org.pserver.Seed;
import org.pserver.cluster.KVStore;
import org.pserver.kernels.UpdateKernels;
import org.pserver.metrics.Metrics;
import org.pserver.store.Slot;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Takes, publishes, retains and recovers the checkpoints of one pserver index in one directory.
 *
 * <h2>Taking one (crash-safe order)</h2>
 *
 * <ol>
 *   <li>stream the parameters into {@code <index>-<uuid>.ckpt.tmp}, each under its own lock;
 *   <li>fsync the file, rename it to {@code <index>-<uuid>.ckpt}, fsync the directory;
 *   <li>publish the metadata at {@code /checkpoints/<index>} in the {@link KVStore};
 *   <li>delete older files of this index, keeping the two newest (the one just published and its
 *       predecessor, the fallback).
 * </ol>
 *
 * A crash at any point leaves the previously published checkpoint intact and loadable; at worst a
 * stray {@code .tmp} file is left, which the next start deletes.
 *
 * <h2>Recovering</h2>
 *
 * No metadata means a fresh start. Otherwise the published file is verified (CRC-32 against the
 * metadata) and loaded. If the metadata is garbage, points outside the directory, or the file is
 * missing, corrupt or fails the checksum, the newest older file of this index that verifies (by its
 * own trailer CRC) is used instead, with a loud log; if there is none, recovery fails and the
 * pserver must not start: it never silently re-initializes over a checkpoint it could not read.
 *
 * <p>Thread-safe: checkpoints are taken one at a time.
 */
public final class CheckpointManager {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointManager.class);
  private static final String SUFFIX = ".ckpt";
  private static final String TMP = ".tmp";
  private static final int KEEP = 2;

  private final Path dir;
  private final int index;
  private final KVStore store;
  private final UpdateKernels kernels;
  private final Duration storeTimeout;
  private volatile Metrics metrics = Metrics.NONE;

  public CheckpointManager(Path dir, int index, KVStore store, UpdateKernels kernels, Duration storeTimeout) {
    this.dir = dir.toAbsolutePath().normalize();
    this.index = index;
    this.store = store;
    this.kernels = kernels;
    this.storeTimeout = storeTimeout;
  }

  public Path directory() {
    return dir;
  }

  /**
   * Where checkpoints taken (size, duration), failed and recovery fallbacks are reported; {@link
   * Metrics#NONE} until set. Set it before {@link #recover()} to count a fallback there.
   */
  public void setMetrics(Metrics metrics) {
    this.metrics = Objects.requireNonNull(metrics, "metrics");
  }

  /** Takes a checkpoint of {@code slots}, publishes its metadata and applies retention. */
  public synchronized CheckpointMeta take(List<Slot> slots) throws IOException {
    long start = System.nanoTime();
    try {
      Taken t = write(slots);
      metrics.checkpointTaken(t.bytes(), System.nanoTime() - start);
      return t.meta();
    } catch (IOException | RuntimeException e) {
      metrics.checkpointFailed(System.nanoTime() - start);
      throw e;
    }
  }

  private record Taken(CheckpointMeta meta, long bytes) {}

  private Taken write(List<Slot> slots) throws IOException {
    Files.createDirectories(dir);
    String uuid = UUID.randomUUID().toString();
    Path file = dir.resolve(index + "-" + uuid + SUFFIX);
    Path tmp = dir.resolve(file.getFileName() + TMP);
    Instant now = Instant.now();
    long created = now.getEpochSecond() * 1_000_000_000L + now.getNano();
    long crc;
    long bytes;
    try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      crc = CheckpointFile.write(ch, index, created, slots);
      ch.force(true);
      bytes = ch.size();
    } catch (IOException | RuntimeException e) {
      Files.deleteIfExists(tmp);
      throw e;
    }
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE);
    fsyncDirectory();
    CheckpointMeta meta = new CheckpointMeta(uuid, file.toString(), crc, created);
    store.put(Seed.checkpointKey(index), meta.toJson(), storeTimeout, false);
    retain(file);
    return new Taken(meta, bytes);
  }

  /**
   * The checkpoint to start from: empty for a fresh start (no metadata), or the published one, or
   * the newest older one that verifies.
   *
   * @throws CheckpointException when metadata exists but no checkpoint of this index is usable
   */
  public Optional<Checkpoint> recover() throws IOException {
    deleteStaleTemporaries();
    CheckpointMeta meta;
    try {
      meta = readMeta(store, index);
    } catch (CheckpointException e) {
      if (e.kind() == CheckpointException.Kind.NOT_FOUND) {
        if (!files().isEmpty()) {
          LOG.warn("{} for pserver {}: starting fresh; ignoring older files in {}", Seed.CHECKPOINT_NOT_FOUND, index, dir);
        }
        return Optional.empty();
      }
      return Optional.of(fallBack(null, e));
    }
    Path path;
    try {
      path = confine(meta.path());
    } catch (CheckpointException e) {
      return Optional.of(fallBack(null, e));
    }
    try {
      return Optional.of(load(path, meta, index, kernels));
    } catch (CheckpointException e) {
      return Optional.of(fallBack(path, e));
    }
  }

  /** The metadata of {@code index}, or a NOT_FOUND exception with the seed's message. */
  static CheckpointMeta readMeta(KVStore store, int index) throws IOException {
    byte[] raw = store.get(Seed.checkpointKey(index), Duration.ofSeconds(3));
    if (raw.length == 0) {
      throw new CheckpointException(CheckpointException.Kind.NOT_FOUND, Seed.CHECKPOINT_NOT_FOUND);
    }
    return CheckpointMeta.fromJson(raw);
  }

  /** Verifies {@code path} against {@code meta} (or, with a null meta, its own trailer) and parses it. */
  static Checkpoint load(Path path, CheckpointMeta meta, int index, UpdateKernels kernels) throws IOException {
    CheckpointFile.Crcs c;
    try {
      c = CheckpointFile.crcs(path);
    } catch (NoSuchFileException e) {
      throw new CheckpointException(CheckpointException.Kind.CORRUPT, "checkpoint file " + path + " is missing", e);
    }
    if (meta != null && c.whole() != meta.crc32()) {
      throw new CheckpointException(CheckpointException.Kind.WRONG_CHECKSUM, Seed.WRONG_CHECKSUM + ": " + path);
    }
    if (c.inner() != c.stored()) {
      throw new CheckpointException(CheckpointException.Kind.WRONG_CHECKSUM, Seed.WRONG_CHECKSUM + ": " + path);
    }
    List<Checkpoint.Entry> entries = CheckpointFile.read(path, index, kernels);
    CheckpointMeta m =
        meta != null ? meta : new CheckpointMeta(uuidOf(path), path.toString(), c.whole(), Files.getLastModifiedTime(path).toMillis() * 1_000_000L);
    return new Checkpoint(m, entries);
  }

  private Checkpoint fallBack(Path failed, CheckpointException why) throws CheckpointException {
    metrics.checkpointFallback();
    List<Path> candidates = files();
    candidates.removeIf(p -> p.equals(failed));
    for (Path p : candidates) {
      try {
        Checkpoint cp = load(p, null, index, kernels);
        LOG.error(
            "CHECKPOINT FALLBACK: the published checkpoint of pserver {} is unusable ({}); recovered the older checkpoint {} instead. Updates after it are lost.",
            index, why.getMessage(), p);
        return cp;
      } catch (IOException e) {
        LOG.error("older checkpoint {} is unusable too: {}", p, e.getMessage());
      }
    }
    LOG.error("no usable checkpoint for pserver {} in {}: {}", index, dir, why.getMessage());
    throw why;
  }

  /** Resolves a metadata path, refusing anything outside the checkpoint directory. */
  private Path confine(String raw) throws CheckpointException {
    Path p = Path.of(raw).toAbsolutePath().normalize();
    if (!p.startsWith(dir) || !p.getFileName().toString().startsWith(index + "-")) {
      throw new CheckpointException(
          CheckpointException.Kind.BAD_METADATA,
          "checkpoint path " + raw + " is not a checkpoint of pserver " + index + " in " + dir);
    }
    return p;
  }

  /** Complete checkpoint files of this index, newest first. */
  private List<Path> files() {
    List<Path> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, index + "-*" + SUFFIX)) {
      ds.forEach(out::add);
    } catch (IOException e) {
      LOG.warn("cannot list {}: {}", dir, e.toString());
    }
    out.sort(Comparator.comparingLong(CheckpointManager::modified).reversed());
    return out;
  }

  private static long modified(Path p) {
    try {
      return Files.getLastModifiedTime(p).toMillis();
    } catch (IOException e) {
      return 0;
    }
  }

  private void retain(Path published) {
    List<Path> all = files();
    all.remove(published);
    all.add(0, published);
    for (int i = KEEP; i < all.size(); i++) {
      try {
        Files.deleteIfExists(all.get(i));
      } catch (IOException e) {
        LOG.warn("cannot delete old checkpoint {}: {}", all.get(i), e.toString());
      }
    }
  }

  private void deleteStaleTemporaries() {
    if (!Files.isDirectory(dir)) {
      return;
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, index + "-*" + SUFFIX + TMP)) {
      for (Path p : ds) {
        LOG.info("deleting unfinished checkpoint {} (a crash interrupted it)", p);
        Files.deleteIfExists(p);
      }
    } catch (IOException e) {
      LOG.warn("cannot clean {}: {}", dir, e.toString());
    }
  }

  private void fsyncDirectory() throws IOException {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    }
  }

  private static String uuidOf(Path p) {
    String n = p.getFileName().toString();
    int dash = n.indexOf('-');
    return n.substring(dash + 1, n.length() - SUFFIX.length());
  }
}
