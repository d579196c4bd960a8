package org.pserver.rpc;

import io.grpc.Drainable;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor.Marshaller;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.pserver.service.PServerException;
import org.pserver.service.WeightsSource;

/**
 * GetParam and GetParams replies written straight from the weights into gRPC's send buffers.
 *
 * <p>The reply is a {@link Drainable} {@link KnownLength} stream: gRPC asks for its length, then
 * calls {@link ReplyStream#drainTo} once with the stream that fills its transport buffers. That
 * writes the protobuf framing of each {@code Parameter} and then the weights, copied from
 * off-heap memory under the parameter's lock through a 64 KiB per-thread array that stays in
 * cache ({@link WeightsSource#writeTo}): one pass over the weights' memory, no copy of the
 * parameter on the heap, and a consistent, never torn, copy per parameter. (gRPC's output stream
 * only takes {@code byte[]}, so a bounce through a small array is the least there is.)
 *
 * <p>A consumer that reads the stream instead (the in-process transport, an interceptor) gets a
 * heap snapshot taken on its first read, under the same locks.
 *
 * <p>The bytes are exactly protobuf's encoding of {@code pserver.Parameter} or {@code
 * pserver.GetParamsResponse} for the same values.
 */
final class ParamReplies {
  private ParamReplies() {}

  private static final int CHUNK = 64 * 1024;
  private static final ThreadLocal<byte[]> CHUNKS = ThreadLocal.withInitial(() -> new byte[CHUNK]);

  /** A reply: one {@code Parameter} ({@code single}) or a {@code GetParamsResponse}. */
  static final class Reply {
    final List<WeightsSource> params;
    final boolean single;
    final byte[][] prefixes;
    final int size;

    Reply(List<WeightsSource> params, boolean single) {
      if (single && params.size() != 1) {
        throw new IllegalArgumentException("a single reply holds one parameter, not " + params.size());
      }
      this.params = params;
      this.single = single;
      this.prefixes = new byte[params.size()][];
      long total = 0;
      for (int i = 0; i < prefixes.length; i++) {
        WeightsSource p = params.get(i);
        byte[] header = parameterHeader(p);
        long body = (long) header.length + p.byteLength();
        if (single) {
          prefixes[i] = header;
        } else {
          byte[] outer = new byte[1 + varintSize(body)];
          outer[0] = 1 << 3 | WireInput.LEN; // GetParamsResponse.params
          putVarint(outer, 1, body);
          prefixes[i] = concat(outer, header);
        }
        total += (long) prefixes[i].length + p.byteLength();
      }
      if (total > Integer.MAX_VALUE - 5) {
        throw new PServerException(PServerException.Code.RESOURCE_EXHAUSTED,
            "the reply would have " + total + " bytes, more than a gRPC message can carry (2 GiB)");
      }
      this.size = (int) total;
    }
  }

  static final Marshaller<Reply> MARSHALLER = new Marshaller<>() {
    @Override
    public InputStream stream(Reply value) {
      return new ReplyStream(value);
    }

    @Override
    public Reply parse(InputStream stream) {
      throw new UnsupportedOperationException("a server-side marshaller only writes replies");
    }
  };

  /** The fields of a {@code Parameter} before its content bytes: name, element type, content tag. */
  private static byte[] parameterHeader(WeightsSource p) {
    byte[] name = p.name().getBytes(StandardCharsets.UTF_8);
    int type = p.type().code();
    int len = p.byteLength();
    int size = (name.length == 0 ? 0 : 1 + varintSize(name.length) + name.length)
        + (type == 0 ? 0 : 1 + varintSize(type))
        + (len == 0 ? 0 : 1 + varintSize(len));
    byte[] h = new byte[size];
    int at = 0;
    if (name.length > 0) {
      h[at++] = 1 << 3 | WireInput.LEN;
      at = putVarint(h, at, name.length);
      System.arraycopy(name, 0, h, at, name.length);
      at += name.length;
    }
    if (type != 0) {
      h[at++] = 2 << 3 | WireInput.VARINT;
      at = putVarint(h, at, type);
    }
    if (len > 0) {
      h[at++] = 3 << 3 | WireInput.LEN;
      putVarint(h, at, len);
    }
    return h;
  }

  static int varintSize(long v) {
    int n = 1;
    while ((v & ~0x7FL) != 0) {
      v >>>= 7;
      n++;
    }
    return n;
  }

  private static int putVarint(byte[] b, int at, long v) {
    while ((v & ~0x7FL) != 0) {
      b[at++] = (byte) ((v & 0x7F) | 0x80);
      v >>>= 7;
    }
    b[at++] = (byte) v;
    return at;
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] c = new byte[a.length + b.length];
    System.arraycopy(a, 0, c, 0, a.length);
    System.arraycopy(b, 0, c, a.length, b.length);
    return c;
  }

  /** The serialized reply, produced on demand. */
  static final class ReplyStream extends InputStream implements Drainable, KnownLength {
    private final Reply reply;
    private boolean drained;
    private byte[] snapshot;
    private int readAt;

    ReplyStream(Reply reply) {
      this.reply = reply;
    }

    @Override
    public int drainTo(OutputStream target) throws IOException {
      if (snapshot != null) { // partly read already: the rest of the snapshot
        int n = snapshot.length - readAt;
        target.write(snapshot, readAt, n);
        readAt = snapshot.length;
        return n;
      }
      if (drained) {
        return 0;
      }
      drained = true;
      writeAll(target);
      return reply.size;
    }

    private void writeAll(OutputStream target) throws IOException {
      byte[] chunk = CHUNKS.get();
      for (int i = 0; i < reply.prefixes.length; i++) {
        target.write(reply.prefixes[i]);
        reply.params.get(i).writeTo(target, chunk);
      }
    }

    @Override
    public int available() {
      if (snapshot != null) {
        return snapshot.length - readAt;
      }
      return drained ? 0 : reply.size;
    }

    @Override
    public int read() throws IOException {
      if (!snap()) {
        return -1;
      }
      return readAt < snapshot.length ? snapshot[readAt++] & 0xFF : -1;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      java.util.Objects.checkFromIndexSize(off, len, b.length);
      if (!snap()) {
        return -1;
      }
      if (len == 0) {
        return 0;
      }
      int n = Math.min(len, snapshot.length - readAt);
      if (n <= 0) {
        return -1;
      }
      System.arraycopy(snapshot, readAt, b, off, n);
      readAt += n;
      return n;
    }

    /** Takes the heap snapshot for readers; false if the stream was already drained. */
    private boolean snap() throws IOException {
      if (snapshot != null) {
        return true;
      }
      if (drained) {
        return false;
      }
      drained = true;
      byte[] all = new byte[reply.size];
      writeAll(new OutputStream() {
        int at;

        @Override
        public void write(int b) {
          all[at++] = (byte) b;
        }

        @Override
        public void write(byte[] b, int off, int len) {
          System.arraycopy(b, off, all, at, len);
          at += len;
        }
      });
      snapshot = all;
      return true;
    }
  }
}
