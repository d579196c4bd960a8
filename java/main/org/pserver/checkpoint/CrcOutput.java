package org.pserver.checkpoint;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.util.zip.CRC32;
import java.util.zip.CRC32C;

/**
 * A buffered channel onto a file that keeps the IEEE CRC-32 and the CRC-32C of everything written
 * (two different polynomials: see {@link CheckpointFile} for why). Small writes
 * (headers) collect in one direct buffer; large ones (parameter and state buffers, written by the
 * optimizer straight from off-heap memory) go through without a copy.
 */
final class CrcOutput implements WritableByteChannel {
  private static final int BUFFER = 1 << 16;

  private final FileChannel file;
  private final CRC32 crc = new CRC32();
  private final CRC32C crc32c = new CRC32C();
  private final ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER);
  private long written;
  private boolean open = true;

  CrcOutput(FileChannel file) {
    this.file = file;
  }

  @Override
  public int write(ByteBuffer src) throws IOException {
    int n = src.remaining();
    if (n <= buf.remaining()) {
      checksum(src);
      buf.put(src);
    } else {
      flush();
      if (n < BUFFER) {
        checksum(src);
        buf.put(src);
      } else {
        checksum(src);
        while (src.hasRemaining()) {
          file.write(src);
        }
      }
    }
    written += n;
    return n;
  }

  private void checksum(ByteBuffer src) {
    crc.update(src.duplicate());
    crc32c.update(src.duplicate());
  }

  /** Writes what is buffered to the file. */
  void flush() throws IOException {
    buf.flip();
    while (buf.hasRemaining()) {
      file.write(buf);
    }
    buf.clear();
  }

  /** IEEE CRC-32 of every byte written so far. */
  long crc() {
    return crc.getValue();
  }

  /** CRC-32C of every byte written so far. */
  long crc32c() {
    return crc32c.getValue();
  }

  long written() {
    return written;
  }

  @Override
  public boolean isOpen() {
    return open;
  }

  /** Flushes; the file itself stays open (its owner forces and closes it). */
  @Override
  public void close() throws IOException {
    if (open) {
      flush();
      open = false;
    }
  }
}
