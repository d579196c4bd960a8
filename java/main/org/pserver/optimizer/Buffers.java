package org.pserver.optimizer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import org.pserver.kernels.OffHeap;

/**
 * Off-heap allocation, byte order and channel helpers.
 *
 * <p>Parameters, gradients and states travel as little-endian bytes; the kernels work on native
 * order. On little-endian machines (every platform pserver ships for) the two coincide and every
 * conversion here is a no-op; on a big-endian machine the Java kernels still work and the bytes
 * are reversed per element on the way in and out.
 */
final class Buffers {
  static final boolean NATIVE_LITTLE_ENDIAN = ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN;

  private Buffers() {}

  /** A zeroed, 64-byte aligned, native-order direct buffer: {@link OffHeap#allocate}. */
  static ByteBuffer allocate(int bytes) {
    return OffHeap.allocate(bytes);
  }

  /**
   * Converts the elements of {@code elemSize} bytes in {@code [from, to)} of {@code b} between
   * little-endian and native order, in place: nothing on little-endian machines.
   */
  static void littleEndianToNative(ByteBuffer b, int from, int to, int elemSize) {
    if (!NATIVE_LITTLE_ENDIAN) {
      reverseElements(b, from, to, elemSize);
    }
  }

  /** Reverses the bytes of each {@code elemSize}-byte element in {@code [from, to)} of {@code b}. */
  static void reverseElements(ByteBuffer b, int from, int to, int elemSize) {
    if (elemSize == 4) {
      for (int i = from; i < to; i += 4) {
        b.putInt(i, Integer.reverseBytes(b.getInt(i)));
      }
    } else {
      for (int i = from; i < to; i += 8) {
        b.putLong(i, Long.reverseBytes(b.getLong(i)));
      }
    }
  }

  /**
   * Writes all of {@code b} (position to limit). Needs a blocking channel: a non-blocking one that
   * accepts nothing would be retried in a busy loop.
   */
  static void writeFully(WritableByteChannel out, ByteBuffer b) throws IOException {
    while (b.hasRemaining()) {
      out.write(b);
    }
  }

  /**
   * Reads until {@code b} is full or the stream ends; returns the number of bytes read. Needs a
   * blocking channel.
   *
   * @throws IOException if the channel returns 0 bytes (a non-blocking channel)
   */
  static int readFully(ReadableByteChannel in, ByteBuffer b) throws IOException {
    int total = 0;
    while (b.hasRemaining()) {
      int n = in.read(b);
      if (n < 0) {
        break;
      }
      if (n == 0) {
        throw new IOException("the channel returned no bytes: a blocking channel is required");
      }
      total += n;
    }
    return total;
  }
}
