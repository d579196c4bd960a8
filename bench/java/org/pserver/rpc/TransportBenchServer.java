package org.pserver.rpc;

import com.google.gson.JsonObject;
import io.grpc.Detachable;
import io.grpc.Drainable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCalls;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.pserver.kernels.Kernels;
import org.pserver.proto.ElementType;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.GetParamsResponse;
import org.pserver.proto.Parameter;
import org.pserver.service.Service;

/**
 * The server process of {@code bench/transport.sh}: everything the client measures, in one JVM,
 * each on its own loopback port:
 *
 * <ul>
 *   <li>{@code pserver}: a {@link Service} behind {@link PServerServer}, exactly as {@code pserver
 *       serve} runs it (fast paths on);
 *   <li>{@code stock}: a second service bound with the generated protobuf marshallers, for the
 *       before/after comparison;
 *   <li>{@code raw}: a plain gRPC service {@code bench.Raw} on a Netty server with the same
 *       settings as pserver's (message limit; default executor and event loops): {@code Discard}
 *       receives a message and releases its buffers untouched, {@code Source} returns a
 *       pre-serialized {@code GetParamsResponse} of the size asked for, {@code Echo} returns its
 *       request, and {@code Stats} reports this JVM's heap allocation and CPU time since the last
 *       {@code Stats("begin")};
 *   <li>{@code tcp}: a raw TCP sink (Java NIO, one thread per connection) that reads an 8-byte
 *       length and that many bytes into a 1 MiB direct buffer, discards them and acknowledges
 *       with one byte.
 * </ul>
 *
 * Prints {@code READY pserver=P stock=P raw=P tcp=P} once listening; exits when stdin closes.
 */
public final class TransportBenchServer {
  static final String RAW = "bench.Raw";

  /** Bytes in and out, unparsed. */
  public static final MethodDescriptor.Marshaller<byte[]> BYTES = RawBytes.MARSHALLER;

  /** Releases the received message without looking at it: the transport's own cost only. */
  static final MethodDescriptor.Marshaller<Integer> DISCARD = new MethodDescriptor.Marshaller<>() {
    @Override
    public InputStream stream(Integer value) {
      throw new UnsupportedOperationException();
    }

    @Override
    public Integer parse(InputStream stream) {
      try {
        int n = stream.available();
        if (stream instanceof Detachable d && stream instanceof HasByteBuffer) {
          d.detach().close();
        } else {
          stream.skip(n);
        }
        return n;
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  };

  /** A cached reply written into gRPC's buffers in one call: one copy, as Drainable replies do. */
  static final MethodDescriptor.Marshaller<byte[]> CACHED = new MethodDescriptor.Marshaller<>() {
    @Override
    public InputStream stream(byte[] value) {
      return new CachedStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      throw new UnsupportedOperationException();
    }
  };

  private static final class CachedStream extends ByteArrayInputStream implements Drainable, KnownLength {
    CachedStream(byte[] b) {
      super(b);
    }

    @Override
    public int drainTo(OutputStream target) throws IOException {
      int n = count - pos;
      target.write(buf, pos, n);
      pos = count;
      return n;
    }
  }

  public static MethodDescriptor<Integer, byte[]> discardMethod() {
    return unary("Discard", DISCARD, BYTES);
  }

  public static MethodDescriptor<GetParamsRequest, byte[]> sourceMethod() {
    return unary("Source", io.grpc.protobuf.ProtoUtils.marshaller(GetParamsRequest.getDefaultInstance()), CACHED);
  }

  public static MethodDescriptor<byte[], byte[]> echoMethod() {
    return unary("Echo", BYTES, BYTES);
  }

  public static MethodDescriptor<byte[], byte[]> statsMethod() {
    return unary("Stats", BYTES, BYTES);
  }

  private static <Q, R> MethodDescriptor<Q, R> unary(String name, MethodDescriptor.Marshaller<Q> q, MethodDescriptor.Marshaller<R> r) {
    return MethodDescriptor.<Q, R>newBuilder().setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(MethodDescriptor.generateFullMethodName(RAW, name))
        .setRequestMarshaller(q).setResponseMarshaller(r).build();
  }

  /** A serialized GetParamsResponse holding one FLOAT32 parameter of {@code bytes} bytes. */
  static byte[] paramsResponse(String name, int bytes) {
    return GetParamsResponse.newBuilder()
        .addParams(Parameter.newBuilder().setName(name).setElementType(ElementType.FLOAT32)
            .setContent(com.google.protobuf.UnsafeByteOperations.unsafeWrap(new byte[bytes])))
        .build().toByteArray();
  }

  public static void main(String[] args) throws Exception {
    int max = PServerServer.DEFAULT_MAX_MESSAGE_BYTES;
    Service service = service();
    PServerServer pserver = PServerServer.netty(service, 0, max).start();
    Service stockService = service();
    Server stock = NettyServerBuilder.forAddress(new InetSocketAddress(0)).maxInboundMessageSize(max)
        .addService(new PServerGrpcService(stockService, false)).build().start();

    Map<String, byte[]> sources = new ConcurrentHashMap<>();
    Stats stats = new Stats(service);
    ServerServiceDefinition raw = ServerServiceDefinition.builder(RAW)
        .addMethod(discardMethod(), ServerCalls.asyncUnaryCall((n, out) -> {
          out.onNext(new byte[0]);
          out.onCompleted();
        }))
        .addMethod(sourceMethod(), ServerCalls.asyncUnaryCall((req, out) -> {
          // Names look like "g1048576": a FLOAT32 parameter of that many bytes.
          String name = req.getNames(0);
          out.onNext(sources.computeIfAbsent(name, k -> paramsResponse(k, Integer.parseInt(k.substring(1)))));
          out.onCompleted();
        }))
        .addMethod(echoMethod(), ServerCalls.asyncUnaryCall((req, out) -> {
          out.onNext(req);
          out.onCompleted();
        }))
        .addMethod(statsMethod(), ServerCalls.asyncUnaryCall((req, out) -> {
          out.onNext(stats.call(new String(req, StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8));
          out.onCompleted();
        }))
        .build();
    // The same settings PServerServer gives its Netty server.
    Server rawServer = NettyServerBuilder.forAddress(new InetSocketAddress(0)).maxInboundMessageSize(max)
        .addService(raw).build().start();
    ServerSocketChannel tcp = ServerSocketChannel.open().bind(new InetSocketAddress("127.0.0.1", 0));
    Thread acceptor = new Thread(() -> sink(tcp), "tcp-sink");
    acceptor.setDaemon(true);
    acceptor.start();

    System.out.println("READY pserver=" + pserver.port() + " stock=" + stock.getPort() + " raw="
        + rawServer.getPort() + " tcp=" + ((InetSocketAddress) tcp.getLocalAddress()).getPort());
    System.out.flush();
    while (System.in.read() >= 0) {
      // until the client goes away
    }
    rawServer.shutdownNow();
    stock.shutdownNow();
    pserver.shutdown(Duration.ofSeconds(1));
    System.exit(0);
  }

  private static Service service() {
    return new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)),
        null, null, Service.WriteGate.OPEN);
  }

  private static void sink(ServerSocketChannel server) {
    while (true) {
      SocketChannel ch;
      try {
        ch = server.accept();
        ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
      } catch (IOException e) {
        return;
      }
      Thread t = new Thread(() -> serve(ch), "tcp-sink-conn");
      t.setDaemon(true);
      t.start();
    }
  }

  private static void serve(SocketChannel ch) {
    ByteBuffer header = ByteBuffer.allocateDirect(8);
    ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
    ByteBuffer ack = ByteBuffer.allocateDirect(1);
    try (ch) {
      while (true) {
        header.clear();
        while (header.hasRemaining()) {
          if (ch.read(header) < 0) {
            return;
          }
        }
        long n = header.getLong(0);
        while (n > 0) {
          buf.clear().limit((int) Math.min(buf.capacity(), n));
          int r = ch.read(buf);
          if (r < 0) {
            return;
          }
          n -= r;
        }
        ack.clear();
        while (ack.hasRemaining()) {
          ch.write(ack);
        }
      }
    } catch (IOException e) {
      // client gone
    }
  }

  /** Heap allocation and CPU time of this JVM between "begin" and "end". */
  static final class Stats {
    private final com.sun.management.ThreadMXBean threads =
        (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private final com.sun.management.OperatingSystemMXBean os =
        (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    private final Service service;
    private Map<Long, Long> allocated = new HashMap<>();
    private long cpu;
    private long gcs;
    private long zeroCopy;
    private long copied;
    private long poolAllocations;

    Stats(Service service) {
      this.service = service;
    }

    private Map<Long, Long> allocatedNow() {
      long[] ids = threads.getAllThreadIds();
      long[] bytes = threads.getThreadAllocatedBytes(ids);
      Map<Long, Long> m = new HashMap<>();
      for (int i = 0; i < ids.length; i++) {
        if (bytes[i] >= 0) {
          m.put(ids[i], bytes[i]);
        }
      }
      return m;
    }

    private static long gcCount() {
      long n = 0;
      for (GarbageCollectorMXBean g : ManagementFactory.getGarbageCollectorMXBeans()) {
        n += Math.max(0, g.getCollectionCount());
      }
      return n;
    }

    synchronized String call(String what) {
      Map<Long, Long> now = allocatedNow();
      long cpuNow = os.getProcessCpuTime();
      JsonObject o = new JsonObject();
      if (what.equals("end")) {
        long delta = 0;
        for (Map.Entry<Long, Long> e : now.entrySet()) {
          // Threads born since "begin" count from zero; threads that died since are lost (none
          // do during a measurement: gRPC's executor keeps idle threads for a minute).
          delta += e.getValue() - allocated.getOrDefault(e.getKey(), 0L);
        }
        o.addProperty("allocatedBytes", delta);
        o.addProperty("cpuNanos", cpuNow - cpu);
        o.addProperty("gcs", gcCount() - gcs);
        o.addProperty("zeroCopyMessages", Inbound.zeroCopyMessages() - zeroCopy);
        o.addProperty("copiedMessages", Inbound.copiedMessages() - copied);
        o.addProperty("poolAllocations", ReceiveBuffers.SHARED.allocations() - poolAllocations);
      }
      o.addProperty("kernels", service.status().kernels());
      allocated = now;
      cpu = cpuNow;
      gcs = gcCount();
      zeroCopy = Inbound.zeroCopyMessages();
      copied = Inbound.copiedMessages();
      poolAllocations = ReceiveBuffers.SHARED.allocations();
      return o.toString();
    }
  }
}
