package org.pserver.rpc;

import static org.pserver.rpc.WireInput.LEN;
import static org.pserver.rpc.WireInput.VARINT;

import io.grpc.MethodDescriptor.Marshaller;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.pserver.ElementType;
import org.pserver.service.Gradient;
import org.pserver.service.PServerException;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;

/**
 * Server-side marshallers for the requests that carry bulk bytes (SendGrads, SendGrad,
 * InitParam). They parse the protobuf wire format straight into the {@link
 * org.pserver.service.Service}'s arguments, and a gradient's or parameter's content becomes a
 * view of the bytes where they arrived, not a heap copy:
 *
 * <ul>
 *   <li>content inside one direct network buffer, aligned to its element size: a read-only view of
 *       that buffer (zero copies);
 *   <li>content spread over several network buffers (anything larger than one HTTP/2 frame, 16
 *       KiB by default), in a heap buffer, or misaligned: one copy into a pooled 64-byte-aligned
 *       off-heap buffer ({@link ReceiveBuffers}), which the kernels need anyway: they read a
 *       contiguous gradient and cannot walk a list of fragments without changing the order of the
 *       norm-clipping sum.
 * </ul>
 *
 * <p>The views are valid until the {@link Received} is closed, which the call handler does as soon
 * as the service call returns ({@link UnaryHandler}). Malformed protobuf is not an exception out of
 * the marshaller (gRPC would report it as UNKNOWN): the {@link Received} carries an
 * INVALID_ARGUMENT error naming the message and the byte offset, which the handler returns.
 *
 * <p>Field semantics are protobuf's: unknown fields are skipped, the last value of a repeated
 * scalar wins, a repeated {@code param} submessage merges, strings must be UTF-8.
 */
final class Requests {
  private Requests() {}

  /** A parsed request, or why it could not be parsed, and the buffers its views point into. */
  static final class Received<T> implements AutoCloseable {
    private final T value;
    private final PServerException error;
    private final Inbound inbound;

    Received(T value, PServerException error, Inbound inbound) {
      this.value = value;
      this.error = error;
      this.inbound = inbound;
    }

    /** The request; throws the parse error if there was one. */
    T get() {
      if (error != null) {
        throw error;
      }
      return value;
    }

    /** Releases the buffers behind the request's views. Idempotent. */
    @Override
    public void close() {
      if (inbound != null) {
        inbound.close();
      }
    }
  }

  /** SendGrads (and SendGrad as a list of one): the service's arguments. */
  record Grads(List<Gradient> grads, String trainerId, long seq, long lowWatermark) {}

  @FunctionalInterface
  interface Parser<T> {
    T parse(WireInput in, Inbound inbound);
  }

  static Marshaller<Received<Grads>> sendGrads(ReceiveBuffers pool) {
    return marshaller("SendGradsRequest", Requests::parseSendGrads, pool);
  }

  static Marshaller<Received<Grads>> sendGrad(ReceiveBuffers pool) {
    return marshaller("Gradient", Requests::parseSendGrad, pool);
  }

  static Marshaller<Received<ParameterWithConfig>> initParam(ReceiveBuffers pool) {
    return marshaller("ParameterWithConfig", Requests::parseInitParam, pool);
  }

  static <T> Marshaller<Received<T>> marshaller(String what, Parser<T> parser, ReceiveBuffers pool) {
    return new Marshaller<>() {
      @Override
      public InputStream stream(Received<T> value) {
        throw new UnsupportedOperationException(what + ": a server-side marshaller only parses requests");
      }

      @Override
      public Received<T> parse(InputStream stream) {
        Inbound inbound = Inbound.take(stream, pool);
        try {
          return new Received<>(parser.parse(new WireInput(inbound.segments(), what), inbound), null, inbound);
        } catch (PServerException e) {
          inbound.close();
          return new Received<>(null, e, null);
        } catch (RuntimeException | Error e) {
          inbound.close();
          throw e;
        }
      }
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  /** A gradient as found on the wire; its content is a byte range of the message. */
  private static final class WireGradient {
    String name = "";
    int type;
    final Content content = new Content();
    String trainerId = "";
    long seq;
    long low;
  }

  /** Where a bytes field lies in the message; {@link #materialize} turns it into a buffer. */
  private static final class Content {
    int at;
    int length;
    int elementSize = 1;
    long copyAt = -1;
    ByteBuffer buffer;
  }

  static Grads parseSendGrads(WireInput in, Inbound inbound) {
    List<WireGradient> gs = new ArrayList<>();
    String trainer = "";
    long seq = 0, low = 0;
    while (!in.atLimit()) {
      int tag = in.readTag();
      switch (tag) {
        case 1 << 3 | LEN -> {
          int old = in.pushLimit(in.readLength());
          gs.add(parseGradient(in));
          in.popLimit(old);
        }
        case 2 << 3 | LEN -> trainer = in.readString();
        case 3 << 3 | VARINT -> seq = in.readVarint();
        case 4 << 3 | VARINT -> low = in.readVarint();
        default -> in.skipField(tag);
      }
    }
    return new Grads(gradients(in, inbound, gs), trainer, seq, low);
  }

  static Grads parseSendGrad(WireInput in, Inbound inbound) {
    WireGradient g = parseGradient(in);
    return new Grads(gradients(in, inbound, List.of(g)), g.trainerId, g.seq, g.low);
  }

  private static WireGradient parseGradient(WireInput in) {
    WireGradient g = new WireGradient();
    while (!in.atLimit()) {
      int tag = in.readTag();
      switch (tag) {
        case 1 << 3 | LEN -> g.name = in.readString();
        case 2 << 3 | VARINT -> g.type = (int) in.readVarint();
        case 3 << 3 | LEN -> content(in, g.content);
        case 4 << 3 | LEN -> g.trainerId = in.readString();
        case 5 << 3 | VARINT -> g.seq = in.readVarint();
        case 6 << 3 | VARINT -> g.low = in.readVarint();
        default -> in.skipField(tag);
      }
    }
    return g;
  }

  private static void content(WireInput in, Content c) {
    c.length = in.readLength();
    c.at = in.position();
    in.skip(c.length);
  }

  private static List<Gradient> gradients(WireInput in, Inbound inbound, List<WireGradient> gs) {
    List<Content> contents = new ArrayList<>(gs.size());
    ElementType[] types = new ElementType[gs.size()];
    for (int i = 0; i < types.length; i++) {
      WireGradient g = gs.get(i);
      types[i] = PServerGrpcService.type(g.type);
      g.content.elementSize = types[i].size();
      contents.add(g.content);
    }
    materialize(in, inbound, contents);
    List<Gradient> out = new ArrayList<>(types.length);
    for (int i = 0; i < types.length; i++) {
      WireGradient g = gs.get(i);
      out.add(new Gradient(g.name, types[i], g.content.buffer));
    }
    return out;
  }

  static ParameterWithConfig parseInitParam(WireInput in, Inbound inbound) {
    String name = "";
    int type = 0;
    Content content = new Content();
    byte[] config = new byte[0];
    while (!in.atLimit()) {
      int tag = in.readTag();
      switch (tag) {
        case 1 << 3 | LEN -> { // Parameter; a repeated submessage merges into the first
          int old = in.pushLimit(in.readLength());
          while (!in.atLimit()) {
            int t = in.readTag();
            switch (t) {
              case 1 << 3 | LEN -> name = in.readString();
              case 2 << 3 | VARINT -> type = (int) in.readVarint();
              case 3 << 3 | LEN -> content(in, content);
              default -> in.skipField(t);
            }
          }
          in.popLimit(old);
        }
        case 2 << 3 | LEN -> config = in.readBytes();
        default -> in.skipField(tag);
      }
    }
    ElementType t = PServerGrpcService.type(type);
    content.elementSize = t.size();
    materialize(in, inbound, List.of(content));
    return new ParameterWithConfig(new Parameter(name, t, content.buffer), config);
  }

  // ---------------------------------------------------------------------------------------------

  private static final ByteBuffer EMPTY =
      ByteBuffer.allocateDirect(0).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);

  /**
   * Gives every content its buffer: a view where the bytes lie contiguous, aligned and off-heap,
   * else a slice of one pooled buffer that all the others share, each slice 64-byte aligned.
   */
  private static void materialize(WireInput in, Inbound inbound, List<Content> contents) {
    long copyBytes = 0;
    for (Content c : contents) {
      if (c.length == 0) {
        c.buffer = EMPTY;
        continue;
      }
      ByteBuffer v = in.contiguous(c.at, c.length);
      if (v != null && v.isDirect() && v.alignmentOffset(0, c.elementSize) == 0) {
        c.buffer = v.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
      } else {
        c.copyAt = copyBytes;
        copyBytes += (c.length + 63L) & ~63L;
      }
    }
    if (copyBytes == 0) {
      return;
    }
    if (copyBytes > Integer.MAX_VALUE - 64) {
      throw new PServerException(PServerException.Code.RESOURCE_EXHAUSTED, "request contents exceed 2 GiB");
    }
    ByteBuffer pooled = inbound.pooled((int) copyBytes);
    for (Content c : contents) {
      if (c.copyAt >= 0) {
        int at = (int) c.copyAt;
        in.copyTo(c.at, c.length, pooled, at);
        c.buffer = pooled.slice(at, c.length).order(ByteOrder.LITTLE_ENDIAN);
      }
    }
  }
}
