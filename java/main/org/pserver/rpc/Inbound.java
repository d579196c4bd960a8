package org.pserver.rpc;

import io.grpc.Detachable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;

/**
 * The bytes of one received message and what keeps them alive.
 *
 * <p>When gRPC hands the marshaller a stream that is {@link Detachable} and {@link HasByteBuffer}
 * (the Netty transport does), the message's network buffers are detached from the stream and
 * looked at in place: {@link #segments()} are views of them, nothing is copied. The detached
 * stream holds those buffers until {@link #close()}; it is marked first, because reading past a
 * buffer of an unmarked stream would release it while our views still point into it.
 *
 * <p>gRPC sometimes merges runs of small frames into a heap array, and then cannot expose the rest
 * of the message as ByteBuffers ({@code byteBufferSupported()} turns false). The rest is then
 * copied, through a 64 KiB per-thread array, into one pooled off-heap buffer: one extra copy of
 * that part, no heap allocation. Such messages are counted in {@link #copiedMessages()}, as are
 * messages from other streams (the in-process transport), which are read into one heap array.
 *
 * <p>{@link #close()} releases the network buffers and the pooled buffers, once; later calls do
 * nothing. Not thread-safe beyond that: gRPC calls a call's listener methods one at a time.
 */
final class Inbound implements AutoCloseable {
  private static final LongAdder OPEN = new LongAdder();
  private static final LongAdder ZERO_COPY = new LongAdder();
  private static final LongAdder COPIED = new LongAdder();
  private static final int BOUNCE = 64 * 1024;
  private static final ThreadLocal<byte[]> BOUNCES = ThreadLocal.withInitial(() -> new byte[BOUNCE]);

  private final List<ByteBuffer> segments;
  private final ReceiveBuffers pool;
  private InputStream detached;
  private final List<ByteBuffer> pooled = new ArrayList<>(2);
  private boolean closed;

  private Inbound(List<ByteBuffer> segments, InputStream detached, ReceiveBuffers pool) {
    this.segments = segments;
    this.detached = detached;
    this.pool = pool;
    OPEN.increment();
  }

  /** Takes the message out of {@code in}: in place when the transport allows it. */
  static Inbound take(InputStream in, ReceiveBuffers pool) {
    try {
      if (!(in instanceof Detachable d && in instanceof HasByteBuffer)) {
        return copied(in, pool);
      }
      InputStream s = d.detach();
      try {
        if (!(s instanceof HasByteBuffer hb) || !s.markSupported()) {
          try (InputStream owned = s) { // cannot hold its buffers safely: copy, then release
            return copied(owned, pool);
          }
        }
        s.mark(Integer.MAX_VALUE);
        List<ByteBuffer> segs = new ArrayList<>();
        while (s.available() > 0) {
          ByteBuffer b = hb.byteBufferSupported() ? hb.getByteBuffer() : null;
          if (b == null || !b.hasRemaining()) {
            // The rest cannot be seen in place (gRPC merged small frames into an array): copy it
            // off-heap. The views taken so far stay valid until close.
            Inbound inbound = new Inbound(segs, s, pool);
            try {
              segs.add(inbound.copyRest(s));
            } catch (IOException | RuntimeException e) {
              inbound.close();
              throw e;
            }
            COPIED.increment();
            return inbound;
          }
          segs.add(b);
          s.skip(b.remaining());
        }
        ZERO_COPY.increment();
        return new Inbound(segs, s, pool);
      } catch (IOException | RuntimeException e) {
        s.close();
        throw e;
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static Inbound copied(InputStream in, ReceiveBuffers pool) throws IOException {
    byte[] all;
    if (in instanceof KnownLength) {
      all = new byte[in.available()];
      int n = in.readNBytes(all, 0, all.length);
      if (n != all.length || in.read() != -1) {
        all = null; // the announced length was wrong: fall back to reading to the end
      }
    } else {
      all = null;
    }
    if (all == null) {
      all = in.readAllBytes();
    }
    COPIED.increment();
    List<ByteBuffer> segs = new ArrayList<>(1);
    segs.add(ByteBuffer.wrap(all));
    return new Inbound(segs, null, pool);
  }

  /** The message, in order: views valid until {@link #close()}. */
  List<ByteBuffer> segments() {
    return segments;
  }

  /** A pooled off-heap buffer of {@code bytes} bytes (64-byte aligned) that lives until {@link #close()}. */
  ByteBuffer pooled(int bytes) {
    ByteBuffer b = pool.acquire(bytes);
    pooled.add(b);
    return b;
  }

  /** Copies what is left of {@code s} into a pooled buffer; returns a view of the bytes copied. */
  private ByteBuffer copyRest(InputStream s) throws IOException {
    int rest = s.available();
    ByteBuffer dst = pooled(rest);
    byte[] bounce = BOUNCES.get();
    int at = 0, n;
    while (at < rest && (n = s.read(bounce, 0, Math.min(bounce.length, rest - at))) > 0) {
      dst.put(at, bounce, 0, n);
      at += n;
    }
    if (at != rest || s.read() != -1) {
      throw new IOException("the message had " + at + " bytes where " + rest + " were announced");
    }
    return dst.slice(0, at);
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    OPEN.decrement();
    for (ByteBuffer b : pooled) {
      pool.release(b);
    }
    pooled.clear();
    if (detached != null) {
      try {
        detached.close();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      } finally {
        detached = null;
      }
    }
  }

  /** Messages taken and not yet closed, in this JVM: 0 when nothing leaks. */
  static long open() {
    return OPEN.sum();
  }

  /** Messages parsed in place since start-up. */
  static long zeroCopyMessages() {
    return ZERO_COPY.sum();
  }

  /** Messages that had to be copied into a heap array since start-up. */
  static long copiedMessages() {
    return COPIED.sum();
  }
}
