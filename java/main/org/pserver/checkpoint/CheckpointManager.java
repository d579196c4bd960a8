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
 *   <li>publish the metadata at {@code /checkpoints/<index>} in the {@link KVStore}; if that fails,
 *       delete the new file (unless reading the metadata back shows it was published after all),
 *       so a file that was never published never passes for a checkpoint;
 *   <li>delete every other file of this index but two: the one just published and the one in
 *       effect before it (the fallback). "In effect" is what this manager last published or
 *       recovered, not the newest file on disk: a stray file (a crash between rename and publish)
 *       or the unusable file that metadata still names after a fallback is never kept as the
 *       fallback. Before a manager has published or recovered anything, the file the metadata
 *       names is the one in effect; if there is none, nothing is deleted.
 * </ol>
 *
 * A crash at any point leaves the previously published checkpoint intact and loadable; at worst a
 * stray {@code .tmp} file is left, which the next start deletes, or a renamed but unpublished file,
 * which the next checkpoint deletes.
 *
 * <h2>Recovering</h2>
 *
 * No metadata means a fresh start. Otherwise the published file is verified (CRC-32 against the
 * metadata) and loaded. If the metadata is garbage, points outside the directory, or the file is
 * missing, corrupt or fails the checksum, the newest file of this index that is older than the
 * published one and verifies (by its own trailer CRC) is used instead, with a loud log. "Older"
 * compares the creation time in each file's header with the metadata's {@code timestamp} (the
 * published file's creation time); files not older were never published and are skipped. When the
 * metadata itself is unusable (garbage, or a path outside the directory) there is nothing to
 * compare with and the newest file that verifies is used. If no file qualifies, recovery fails
 * and the pserver must not start: it never silently re-initializes over a checkpoint it could not
 * read.
 *
 * <p>Thread-safe: checkpoints are taken one at a time.
 */
public final class CheckpointManager {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointManager.class);
  private static final String SUFFIX = ".ckpt";
  private static final String TMP = ".tmp";

  private final Path dir;
  private final int index;
  private final KVStore store;
  private final UpdateKernels kernels;
  private final Duration storeTimeout;
  private volatile Metrics metrics = Metrics.NONE;
  /** The checkpoint in effect; written only under this object's lock, read without it. */
  private volatile CheckpointMeta current;

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

  /**
   * The checkpoint in effect: the last one this manager published, or the one {@link #recover()}
   * returned (after a fallback, the older file it loaded, not the unusable one the metadata still
   * names); null before either. Never moves backwards, and does not wait for a checkpoint in
   * progress.
   */
  public CheckpointMeta current() {
    return current;
  }

  /**
   * Takes a checkpoint of {@code slots}, publishes its metadata and applies retention.
   *
   * @throws IOException if it could not be written or published; then no new file is left behind
   *     (but see {@link KVStore}: a failed put may have happened, which is checked by reading the
   *     metadata back) and the checkpoint in effect is unchanged
   */
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
    Path before = inEffect();
    publish(meta, file);
    current = meta;
    retain(file, before);
    return new Taken(meta, bytes);
  }

  /**
   * Publishes {@code meta}; if the store refuses, deletes {@code file} and rethrows, unless the
   * metadata read back is {@code meta} (a store exception means the put may have happened).
   */
  private void publish(CheckpointMeta meta, Path file) throws IOException {
    try {
      store.put(Seed.checkpointKey(index), meta.toJson(), storeTimeout, false);
    } catch (IOException | RuntimeException e) {
      if (publishedAnyway(meta)) {
        LOG.warn("publishing checkpoint {} of pserver {} reported {}, but the metadata names it: it is published", meta.uuid(), index, e.toString());
        return;
      }
      try {
        Files.deleteIfExists(file);
      } catch (IOException d) {
        e.addSuppressed(d);
      }
      LOG.error("checkpoint {} of pserver {} was written but not published ({}): deleted {}", meta.uuid(), index, e.toString(), file);
      throw e;
    }
  }

  private boolean publishedAnyway(CheckpointMeta meta) {
    try {
      return meta.equals(readMeta(store, index));
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  /** The file of the checkpoint in effect; before any, the one the metadata names (null: none). */
  private Path inEffect() {
    CheckpointMeta m = current;
    if (m != null) {
      return Path.of(m.path());
    }
    try {
      Path p = confine(readMeta(store, index).path());
      return Files.exists(p) ? p : null;
    } catch (IOException | RuntimeException e) {
      return null;
    }
  }

  /**
   * The checkpoint to start from: empty for a fresh start (no metadata), or the published one, or
   * the newest older one that verifies.
   *
   * @throws CheckpointException when metadata exists but no checkpoint of this index is usable
   */
  public synchronized Optional<Checkpoint> recover() throws IOException {
    Optional<Checkpoint> cp = find();
    cp.ifPresent(c -> current = c.meta());
    return cp;
  }

  private Optional<Checkpoint> find() throws IOException {
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
      return Optional.of(fallBack(null, Long.MAX_VALUE, e));
    }
    Path path;
    try {
      path = confine(meta.path());
    } catch (CheckpointException e) {
      return Optional.of(fallBack(null, Long.MAX_VALUE, e));
    }
    try {
      return Optional.of(load(path, meta, index, kernels));
    } catch (CheckpointException e) {
      return Optional.of(fallBack(path, meta.timestamp(), e));
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
        meta != null ? meta : new CheckpointMeta(uuidOf(path), path.toString(), c.whole(), CheckpointFile.created(path));
    return new Checkpoint(m, entries);
  }

  /**
   * The newest file created before {@code olderThan} (ns; {@link Long#MAX_VALUE}: any) that
   * verifies, other than {@code failed}.
   */
  private Checkpoint fallBack(Path failed, long olderThan, CheckpointException why) throws CheckpointException {
    metrics.checkpointFallback();
    for (Candidate c : files()) {
      Path p = c.path();
      if (p.equals(failed)) {
        continue;
      }
      if (c.created() >= olderThan) {
        LOG.warn("not falling back to {}: it is not older than the published checkpoint, so it was never published", p);
        continue;
      }
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

  /** A checkpoint file and the creation time in its header ({@link Long#MIN_VALUE}: unreadable). */
  private record Candidate(Path path, long created) {}

  /** Renamed checkpoint files of this index, newest first by the creation time in their headers. */
  private List<Candidate> files() {
    List<Candidate> out = new ArrayList<>();
    for (Path p : paths()) {
      out.add(new Candidate(p, created(p)));
    }
    out.sort(Comparator.comparingLong(Candidate::created).reversed().thenComparing(Candidate::path));
    return out;
  }

  /** Renamed checkpoint files of this index, in no particular order. */
  private List<Path> paths() {
    List<Path> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, index + "-*" + SUFFIX)) {
      ds.forEach(out::add);
    } catch (IOException e) {
      LOG.warn("cannot list {}: {}", dir, e.toString());
    }
    return out;
  }

  private static long created(Path p) {
    try {
      return CheckpointFile.created(p);
    } catch (IOException e) {
      return Long.MIN_VALUE;
    }
  }

  /** Deletes every file of this index but {@code published} and {@code before} (null: none). */
  private void retain(Path published, Path before) {
    if (before == null) {
      LOG.debug("pserver {}: no earlier checkpoint was in effect; deleting no older files", index);
      return;
    }
    for (Path p : paths()) { // no order needed: everything but two goes
      if (p.equals(published) || p.equals(before)) {
        continue;
      }
      try {
        Files.deleteIfExists(p);
      } catch (IOException e) {
        LOG.warn("cannot delete old checkpoint {}: {}", p, e.toString());
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
