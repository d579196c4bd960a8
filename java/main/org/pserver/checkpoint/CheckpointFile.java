package org.pserver.checkpoint;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32;
import java.util.zip.CRC32C;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernels;
import org.pserver.optimizer.ParameterOptimizer;
import org.pserver.store.AppliedPushes;
import org.pserver.store.Slot;

/**
 * The checkpoint file format: written as a stream, parameter by parameter, and read back with
 * every length checked against the file.
 *
 * <pre>
 * header   u32 magic "PSCK" | u16 version (1) | u16 0 | i32 pserver index | u32 parameter count
 *          | i64 created (ns since the epoch)
 * per parameter, in name order:
 *          u16 name length | name (UTF-8) | u8 element type | u32 config length | config
 *          | u64 state length | optimizer state ({@link ParameterOptimizer#writeState})
 *          | u32 applied-pushes length | applied pushes ({@link AppliedPushes#encode})
 * trailer  u32 magic "PSCE" | u32 parameter count | u32 CRC-32C of every byte before this field
 * </pre>
 *
 * All integers are little-endian. The metadata's {@code crc32} (IEEE CRC-32, the seed's) covers the
 * whole file; the trailer's own checksum lets an older file be verified without its metadata (for
 * falling back to it). The trailer uses CRC-32C on purpose: a file ending in the little-endian IEEE
 * CRC-32 of its own preceding bytes has the same whole-file IEEE CRC-32 whatever it contains (the
 * CRC residue), which would make the metadata's checksum constant and useless.
 */
final class CheckpointFile {
  static final int MAGIC = 0x4B435350; // "PSCK" read little-endian
  static final int TRAILER = 0x45435350; // "PSCE"
  static final short VERSION = 1;
  static final int HEADER_BYTES = 24;
  static final int TRAILER_BYTES = 12;
  /**
   * Fault injection for crash tests only: milliseconds to pause after writing each parameter, so a
   * test can kill the process in the middle of a checkpoint deterministically. Off (0) unless the
   * system property {@code pserver.fault.checkpointPauseMillis} is set.
   */
  private static final long PAUSE_MILLIS = Long.getLong("pserver.fault.checkpointPauseMillis", 0);

  private CheckpointFile() {}

  /**
   * Writes a checkpoint of {@code slots} to {@code file}, holding each slot's lock only while that
   * slot is written, so training on every other parameter goes on.
   *
   * @return the CRC-32 of the whole file
   */
  static long write(FileChannel file, int index, long createdNanos, List<Slot> slots)
      throws IOException {
    CrcOutput out = new CrcOutput(file);
    ByteBuffer h = le(HEADER_BYTES);
    h.putInt(MAGIC).putShort(VERSION).putShort((short) 0).putInt(index).putInt(slots.size());
    h.putLong(createdNanos);
    out.write(h.flip());
    for (Slot s : slots) {
      byte[] name = s.name().getBytes(StandardCharsets.UTF_8);
      s.lock().lock();
      try {
        ParameterOptimizer opt = s.optimizer();
        byte[] config = opt.config();
        long stateSize = opt.stateSize();
        ByteBuffer r = le(2 + name.length + 1 + 4 + config.length + 8);
        r.putShort((short) name.length).put(name).put((byte) opt.type().code());
        r.putInt(config.length).put(config).putLong(stateSize);
        out.write(r.flip());
        long before = out.written();
        opt.writeState(out);
        if (out.written() - before != stateSize) {
          throw new IOException(
              "optimizer of " + s.name() + " wrote " + (out.written() - before) + " state bytes, declared " + stateSize);
        }
        byte[] applied = s.applied().encode();
        out.write(le(4).putInt(applied.length).flip());
        out.write(ByteBuffer.wrap(applied));
      } finally {
        s.lock().unlock();
      }
      if (PAUSE_MILLIS > 0) {
        pause();
      }
    }
    ByteBuffer t = le(8).putInt(TRAILER).putInt(slots.size());
    out.write(t.flip());
    long inner = out.crc32c();
    out.write(le(4).putInt((int) inner).flip());
    out.close();
    return out.crc();
  }

  private static void pause() throws IOException {
    try {
      Thread.sleep(PAUSE_MILLIS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new java.io.InterruptedIOException("checkpoint interrupted");
    }
  }

  /**
   * The creation time (ns since the epoch) in the header of {@code path}, as written: the order of
   * checkpoints, exact where file modification times may tie. The header is not verified by a
   * checksum here; a damaged one is caught when the file is loaded.
   *
   * @throws CheckpointException CORRUPT if the file is shorter than a header or not a checkpoint
   */
  static long created(Path path) throws IOException {
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      ByteBuffer h = le(HEADER_BYTES);
      while (h.hasRemaining()) {
        if (ch.read(h) < 0) {
          throw corrupt(path, "truncated header");
        }
      }
      h.flip();
      if (h.getInt() != MAGIC) {
        throw corrupt(path, "not a pserver checkpoint (bad magic)");
      }
      return h.getLong(HEADER_BYTES - 8);
    }
  }

  /**
   * Checksums of a file: the CRC-32C of everything but the last four bytes, the IEEE CRC-32 of all
   * of it, and those last four bytes (the stored CRC-32C).
   */
  record Crcs(long inner, long whole, long stored, long size) {}

  static Crcs crcs(Path path) throws IOException {
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = ch.size();
      if (size < HEADER_BYTES + TRAILER_BYTES) {
        throw new CheckpointException(
            CheckpointException.Kind.CORRUPT, "checkpoint file " + path + " is truncated (" + size + " bytes)");
      }
      CRC32 crc = new CRC32();
      CRC32C body = new CRC32C();
      ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
      long left = size - 4;
      while (left > 0) {
        buf.clear().limit((int) Math.min(buf.capacity(), left));
        int n = ch.read(buf);
        if (n < 0) {
          throw new EOFException(path.toString());
        }
        left -= n;
        buf.flip();
        body.update(buf.duplicate());
        crc.update(buf);
      }
      long inner = body.getValue();
      ByteBuffer last = le(4);
      while (last.hasRemaining()) {
        if (ch.read(last) < 0) {
          throw new EOFException(path.toString());
        }
      }
      crc.update(last.flip().duplicate());
      return new Crcs(inner, crc.getValue(), last.getInt() & 0xFFFF_FFFFL, size);
    }
  }

  /**
   * Parses a file whose checksum has already been verified. Every length is checked against what
   * is left of the file, so even a file with a valid CRC but a wrong layout is rejected cleanly.
   */
  static List<Checkpoint.Entry> read(Path path, int expectedIndex, UpdateKernels kernels)
      throws IOException {
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = ch.size();
      Input in = new Input(ch, size - TRAILER_BYTES);
      ByteBuffer h = in.read(HEADER_BYTES);
      if (h.getInt() != MAGIC) {
        throw corrupt(path, "not a pserver checkpoint (bad magic)");
      }
      short version = h.getShort();
      if (version != VERSION) {
        throw corrupt(path, "unsupported checkpoint version " + version);
      }
      h.getShort();
      int index = h.getInt();
      if (index != expectedIndex) {
        throw corrupt(path, "checkpoint of pserver " + index + ", expected " + expectedIndex);
      }
      int count = h.getInt();
      if (count < 0) {
        throw corrupt(path, "negative parameter count");
      }
      List<Checkpoint.Entry> entries = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        int nameLen = in.read(2).getShort() & 0xFFFF;
        String name = StandardCharsets.UTF_8.decode(in.read(nameLen)).toString();
        int typeCode = in.read(1).get() & 0xFF;
        if (typeCode > 5) {
          throw corrupt(path, "parameter " + name + ": bad element type " + typeCode);
        }
        ElementType type = ElementType.fromCode(typeCode);
        int configLen = in.read(4).getInt();
        byte[] config = bytes(in.read(in.checkLength(configLen, path, name)));
        long stateLen = in.read(8).getLong();
        in.checkLength(stateLen, path, name);
        long before = in.position();
        ParameterOptimizer opt;
        try {
          opt = ParameterOptimizer.readState(type, config, in.limited(stateLen), kernels);
        } catch (IllegalArgumentException e) {
          throw corrupt(path, "parameter " + name + ": " + e.getMessage());
        }
        if (in.position() - before != stateLen) {
          throw corrupt(path, "parameter " + name + ": state is " + (in.position() - before) + " bytes, declared " + stateLen);
        }
        int appliedLen = in.read(4).getInt();
        AppliedPushes applied = AppliedPushes.decode(bytes(in.read(in.checkLength(appliedLen, path, name))));
        entries.add(new Checkpoint.Entry(name, type, config, opt, applied));
      }
      in.end();
      ByteBuffer t = in.readTrailer();
      if (t.getInt() != TRAILER || t.getInt() != count) {
        throw corrupt(path, "bad trailer");
      }
      return entries;
    }
  }

  private static CheckpointException corrupt(Path path, String why) {
    return new CheckpointException(CheckpointException.Kind.CORRUPT, "checkpoint " + path + ": " + why);
  }

  private static byte[] bytes(ByteBuffer b) {
    byte[] a = new byte[b.remaining()];
    b.get(a);
    return a;
  }

  private static ByteBuffer le(int n) {
    return ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN);
  }

  /**
   * Buffered reading of the body (everything before the trailer), refusing to read past it.
   * Large reads (optimizer state) go straight from the file into the caller's buffer.
   */
  private static final class Input {
    private final FileChannel ch;
    private final long bodyEnd;
    private final ByteBuffer buf = ByteBuffer.allocateDirect(1 << 16).order(ByteOrder.LITTLE_ENDIAN).limit(0);
    private long filePos;

    Input(FileChannel ch, long bodyEnd) {
      this.ch = ch;
      this.bodyEnd = bodyEnd;
    }

    long position() {
      return filePos - buf.remaining();
    }

    int checkLength(long len, Path path, String name) throws CheckpointException {
      if (len < 0 || len > bodyEnd - position()) {
        throw corrupt(path, "parameter " + name + ": length " + len + " runs past the end of the file");
      }
      return (int) Math.min(len, Integer.MAX_VALUE);
    }

    ByteBuffer read(int n) throws IOException {
      if (n > bodyEnd - position()) {
        throw new CheckpointException(CheckpointException.Kind.CORRUPT, "checkpoint is truncated");
      }
      ByteBuffer out = le(n);
      while (out.hasRemaining()) {
        if (!buf.hasRemaining()) {
          fill();
        }
        int k = Math.min(out.remaining(), buf.remaining());
        ByteBuffer slice = buf.slice(buf.position(), k);
        out.put(slice);
        buf.position(buf.position() + k);
      }
      return out.flip();
    }

    private void fill() throws IOException {
      buf.clear().limit((int) Math.min(buf.capacity(), bodyEnd - filePos));
      int n = buf.limit() == 0 ? -1 : ch.read(buf, filePos);
      if (n <= 0) {
        throw new CheckpointException(CheckpointException.Kind.CORRUPT, "checkpoint is truncated");
      }
      filePos += n;
      buf.flip();
    }

    /** A channel over the next {@code len} bytes of the body. */
    ReadableByteChannel limited(long len) {
      long end = position() + len;
      return new ReadableByteChannel() {
        @Override
        public int read(ByteBuffer dst) throws IOException {
          long left = end - position();
          if (left <= 0) {
            return -1;
          }
          int want = (int) Math.min(dst.remaining(), left);
          if (buf.hasRemaining()) {
            int k = Math.min(want, buf.remaining());
            dst.put(buf.slice(buf.position(), k));
            buf.position(buf.position() + k);
            return k;
          }
          ByteBuffer d = dst.slice(dst.position(), want);
          int n = ch.read(d, filePos);
          if (n < 0) {
            return -1;
          }
          filePos += n;
          dst.position(dst.position() + n);
          return n;
        }

        @Override
        public boolean isOpen() {
          return true;
        }

        @Override
        public void close() {}
      };
    }

    void end() throws CheckpointException {
      if (position() != bodyEnd) {
        throw new CheckpointException(
            CheckpointException.Kind.CORRUPT, "checkpoint has " + (bodyEnd - position()) + " unexpected bytes before its trailer");
      }
    }

    ByteBuffer readTrailer() throws IOException {
      ByteBuffer t = le(8);
      while (t.hasRemaining()) {
        if (ch.read(t, bodyEnd + t.position()) < 0) {
          throw new CheckpointException(CheckpointException.Kind.CORRUPT, "checkpoint is truncated");
        }
      }
      return t.flip();
    }
  }
}
