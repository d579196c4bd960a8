package org.pserver.rpc;

import io.grpc.Detachable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A stand-in for the stream gRPC's Netty transport gives a marshaller: a message spread over
 * buffers of chosen sizes (direct or heap), {@link Detachable}, {@link HasByteBuffer}, markable,
 * with gRPC's release rules made visible. A buffer is <em>released</em> when an unmarked stream
 * reads past it, or when the stream is closed; a released buffer is overwritten with {@code 0xEE}
 * bytes, so a view still in use after its release reads garbage and a test notices.
 */
final class FragmentedStream extends InputStream implements KnownLength, HasByteBuffer, Detachable {
  static final byte POISON = (byte) 0xEE;

  private final List<ByteBuffer> parts;
  /** Parts gRPC would hold as merged arrays: not exposable as ByteBuffers. */
  private final List<Boolean> arrays;
  private final AtomicInteger closes;
  private int part;
  private int offset;
  private int remaining;
  private boolean marked;
  private boolean closed;

  private FragmentedStream(List<ByteBuffer> parts, List<Boolean> arrays, AtomicInteger closes) {
    this.parts = parts;
    this.arrays = arrays;
    this.closes = closes;
    for (ByteBuffer b : parts) {
      remaining += b.capacity();
    }
  }

  /**
   * {@code message} cut into pieces of the given sizes (the last size repeats), each in a buffer of
   * its own: direct when {@code direct} is true, else on the heap. Direct pieces start at a
   * deliberately odd address offset.
   */
  static FragmentedStream of(byte[] message, boolean direct, AtomicInteger closes, int... sizes) {
    List<ByteBuffer> parts = new ArrayList<>();
    int at = 0, i = 0;
    while (at < message.length) {
      int n = Math.min(sizes[Math.min(i++, sizes.length - 1)], message.length - at);
      ByteBuffer b;
      if (direct) {
        b = ByteBuffer.allocateDirect(n + 3).position(3).slice();
      } else {
        b = ByteBuffer.allocate(n);
      }
      b.put(0, message, at, n);
      parts.add(b);
      at += n;
    }
    List<Boolean> arrays = new ArrayList<>();
    parts.forEach(b -> arrays.add(false));
    return new FragmentedStream(parts, arrays, closes);
  }

  /**
   * Marks parts as arrays gRPC merged small frames into: while one of them is ahead, {@link
   * #byteBufferSupported()} is false, as for gRPC's composite buffer.
   */
  FragmentedStream withArrays(int... indices) {
    for (int i : indices) {
      arrays.set(i, true);
    }
    return this;
  }

  /** Overwrites parts {@code [from, to)}. */
  private void poison(int from, int to) {
    for (int i = from; i < to; i++) {
      ByteBuffer b = parts.get(i);
      for (int j = 0; j < b.capacity(); j++) {
        b.put(j, POISON);
      }
    }
  }

  @Override
  public int available() {
    return remaining;
  }

  @Override
  public int read() {
    if (available() == 0) {
      return -1;
    }
    byte b = parts.get(part).get(offset);
    advance(1);
    return b & 0xFF;
  }

  @Override
  public int read(byte[] dst, int off, int len) {
    if (len == 0) {
      return 0;
    }
    if (available() == 0) {
      return -1;
    }
    int n = Math.min(len, parts.get(part).capacity() - offset);
    parts.get(part).get(offset, dst, off, n);
    advance(n);
    return n;
  }

  @Override
  public long skip(long n) {
    long done = 0;
    while (done < n && available() > 0) {
      int k = (int) Math.min(n - done, parts.get(part).capacity() - offset);
      advance(k);
      done += k;
    }
    return done;
  }

  private void advance(int n) {
    offset += n;
    remaining -= n;
    while (part < parts.size() && offset == parts.get(part).capacity()) {
      if (!marked) {
        poison(part, part + 1);
      }
      part++;
      offset = 0;
    }
  }

  @Override
  public boolean markSupported() {
    return true;
  }

  @Override
  public void mark(int readLimit) {
    marked = true;
  }

  @Override
  public boolean byteBufferSupported() {
    return !arrays.subList(part, parts.size()).contains(true);
  }

  @Override
  public ByteBuffer getByteBuffer() {
    if (part >= parts.size()) {
      return null;
    }
    if (arrays.get(part)) {
      throw new UnsupportedOperationException("an array part");
    }
    ByteBuffer b = parts.get(part).duplicate();
    return b.position(offset);
  }

  @Override
  public InputStream detach() {
    List<ByteBuffer> rest = new ArrayList<>(parts.subList(part, parts.size()));
    FragmentedStream d = new FragmentedStream(rest, new ArrayList<>(arrays.subList(part, parts.size())), closes);
    d.offset = offset;
    d.remaining -= offset;
    arrays.subList(part, parts.size()).clear();
    parts.subList(part, parts.size()).clear();
    part = 0;
    offset = 0;
    remaining = 0;
    return d;
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    closes.incrementAndGet();
    poison(0, parts.size());
  }
}
