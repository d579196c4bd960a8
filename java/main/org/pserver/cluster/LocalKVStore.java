package org.pserver.cluster;

import java.io.IOException;
import java.net.URLEncoder;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;

/**
 * The {@link KVStore} of a standalone pserver: one file per key in a directory (next to the
 * checkpoints), named by the URL-encoded key, e.g. {@code %2Fcheckpoints%2F0}. Writes are atomic
 * and durable: a temporary file, fsync, rename, fsync of the directory. There are no leases, so
 * {@code put(..., withLease=true)} is refused. Thread-safe; timeouts are not needed locally and are
 * ignored.
 */
public final class LocalKVStore implements KVStore {
  private final Path dir;

  public LocalKVStore(Path dir) {
    this.dir = dir.toAbsolutePath().normalize();
  }

  private Path file(String key) {
    if (key == null || key.isEmpty()) {
      throw new IllegalArgumentException("empty key");
    }
    return dir.resolve(URLEncoder.encode(key, StandardCharsets.UTF_8));
  }

  @Override
  public byte[] get(String key, Duration timeout) throws IOException {
    try {
      return Files.readAllBytes(file(key));
    } catch (NoSuchFileException e) {
      return new byte[0];
    }
  }

  @Override
  public synchronized void put(String key, byte[] value, Duration timeout, boolean withLease)
      throws IOException {
    if (withLease) {
      throw new IOException("a standalone pserver has no lease: cannot put " + key + " with one");
    }
    Files.createDirectories(dir);
    Path target = file(key);
    Path tmp = target.resolveSibling(target.getFileName() + ".tmp");
    try (FileChannel ch =
        FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
      ByteBuffer b = ByteBuffer.wrap(value);
      while (b.hasRemaining()) {
        ch.write(b);
      }
      ch.force(true);
    }
    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    }
  }

  @Override
  public String toString() {
    return "local store in " + dir;
  }
}
