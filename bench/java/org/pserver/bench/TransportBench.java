package org.pserver.bench;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.grpc.CallOptions;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ClientCalls;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.GetParamsResponse;
import org.pserver.proto.Gradient;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.Parameter;
import org.pserver.proto.ParameterWithConfig;
import org.pserver.proto.SendGradsRequest;
import org.pserver.proto.paddle.AdamConfig;
import org.pserver.proto.paddle.ConstLrConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.rpc.TransportBenchServer;

/**
 * The client process of {@code bench/transport.sh}: starts {@link TransportBenchServer} as a
 * separate JVM, then measures, on loopback, in one run, with variants alternating within every
 * round (the machine is a noisy shared VM; every figure is a median over rounds):
 *
 * <ul>
 *   <li>throughput per payload size (4 KiB, 1 MiB, 64 MiB per call) and trainer count (1 and 4
 *       threads in this JVM, each with its own channel, i.e. its own TCP connection, as separate
 *       trainer processes would have) of: raw TCP (NIO, acknowledged writes), a raw gRPC service
 *       that discards the same request bytes, pserver SendGrads with Adam applied (float32),
 *       pserver GetParams, and a raw gRPC service returning the same reply bytes; at 1 MiB also
 *       SendGrads and GetParams through the stock protobuf marshallers;
 *   <li>server heap allocation and CPU time per payload byte for each of them (measured inside
 *       the server JVM);
 *   <li>p50 and p99 latency of a 1 KiB SendGrad against a raw gRPC 1 KiB unary echo.
 * </ul>
 *
 * Every call of a throughput measurement is a blocking unary call (or a write and its one-byte
 * acknowledgement for TCP) from each trainer thread, back to back.
 *
 * <p>Usage: {@code TransportBench <short|full> <out-dir> <header> <server-jvm-flags...>}
 */
public final class TransportBench {
  static final int[] SIZES = {4 << 10, 1 << 20, 64 << 20};
  static final int[] TRAINERS = {1, 4};
  static final int LATENCY_BYTES = 1 << 10;

  /** What one throughput variant is called in the report, in column order. */
  static final String TCP = "raw TCP";
  static final String DISCARD = "raw gRPC discard";
  static final String SEND = "SendGrads (Adam)";
  static final String SEND_STOCK = "SendGrads, stock marshaller";
  static final String GET = "GetParams";
  static final String SOURCE = "raw gRPC source";
  static final String GET_STOCK = "GetParams, stock marshaller";
  static final String[] VARIANTS = {TCP, DISCARD, SEND, SEND_STOCK, GET, SOURCE, GET_STOCK};
  static final String LAT_SEND = "SendGrad 1 KiB";
  static final String LAT_ECHO = "raw gRPC echo 1 KiB";

  private final int rounds;
  private final long millis;
  private final int latencyCalls;
  private final Ports ports;
  private final List<Trainer> trainers = new ArrayList<>();
  private final Map<Integer, SendGradsRequest> pushes = new LinkedHashMap<>();
  private final Map<Integer, ByteBuffer> tcpPayloads = new LinkedHashMap<>();
  private final MethodDescriptor<SendGradsRequest, byte[]> discard;
  private final MethodDescriptor<GetParamsRequest, GetParamsResponse> source;

  record Ports(int pserver, int stock, int raw, int tcp) {}

  /** One trainer: its own channels and TCP connection. */
  static final class Trainer implements AutoCloseable {
    final ManagedChannel pserver;
    final ManagedChannel stock;
    final ManagedChannel raw;
    final SocketChannel tcp;
    final ByteBuffer header = ByteBuffer.allocateDirect(8);
    final ByteBuffer ack = ByteBuffer.allocateDirect(1);

    Trainer(Ports p) throws IOException {
      pserver = channel(p.pserver());
      stock = channel(p.stock());
      raw = channel(p.raw());
      tcp = SocketChannel.open(new InetSocketAddress("127.0.0.1", p.tcp()));
      tcp.setOption(StandardSocketOptions.TCP_NODELAY, true);
    }

    static ManagedChannel channel(int port) {
      return NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
          .maxInboundMessageSize(512 << 20).build();
    }

    @Override
    public void close() throws IOException {
      pserver.shutdownNow();
      stock.shutdownNow();
      raw.shutdownNow();
      tcp.close();
    }
  }

  TransportBench(Ports ports, int rounds, long millis, int latencyCalls) {
    this.ports = ports;
    this.rounds = rounds;
    this.millis = millis;
    this.latencyCalls = latencyCalls;
    this.discard = MethodDescriptor.<SendGradsRequest, byte[]>newBuilder()
        .setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(TransportBenchServer.discardMethod().getFullMethodName())
        .setRequestMarshaller(ProtoUtils.marshaller(SendGradsRequest.getDefaultInstance()))
        .setResponseMarshaller(TransportBenchServer.BYTES).build();
    this.source = MethodDescriptor.<GetParamsRequest, GetParamsResponse>newBuilder()
        .setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(TransportBenchServer.sourceMethod().getFullMethodName())
        .setRequestMarshaller(ProtoUtils.marshaller(GetParamsRequest.getDefaultInstance()))
        .setResponseMarshaller(ProtoUtils.marshaller(GetParamsResponse.getDefaultInstance())).build();
  }

  static String name(int bytes) {
    return "g" + bytes;
  }

  static ByteString gradient(int bytes, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    ByteBuffer b = ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
    while (b.hasRemaining()) {
      b.putFloat((float) (rnd.nextDouble() - 0.5) * 1e-3f);
    }
    return UnsafeByteOperations.unsafeWrap(b.array());
  }

  static byte[] adam() {
    return OptimizerConfig.newBuilder()
        .setOptimizer(OptimizerConfig.Optimizer.Adam)
        .setAdam(AdamConfig.newBuilder().setBeta1(0.9).setBeta2(0.999).setEpsilon(1e-8).setDecay(0))
        .setLrPolicy(OptimizerConfig.LrPolicy.Const)
        .setConstLr(ConstLrConfig.newBuilder().setLearningRate(1e-3))
        .build().toByteArray();
  }

  void setUp(int trainerCount) throws IOException {
    for (int i = 0; i < trainerCount; i++) {
      trainers.add(new Trainer(ports));
    }
    PServerGrpc.PServerBlockingStub ps = PServerGrpc.newBlockingStub(trainers.get(0).pserver);
    PServerGrpc.PServerBlockingStub stock = PServerGrpc.newBlockingStub(trainers.get(0).stock);
    List<Integer> all = new ArrayList<>();
    for (int s : SIZES) {
      all.add(s);
    }
    all.add(LATENCY_BYTES);
    for (int size : all) {
      ParameterWithConfig init = ParameterWithConfig.newBuilder()
          .setParam(Parameter.newBuilder().setName(name(size)).setElementType(ElementType.FLOAT32)
              .setContent(gradient(size, 1)))
          .setConfig(ByteString.copyFrom(adam())).build();
      ps.initParam(init);
      if (size == 1 << 20) {
        stock.initParam(init);
      }
      SendGradsRequest push = SendGradsRequest.newBuilder()
          .addGrads(Gradient.newBuilder().setName(name(size)).setElementType(ElementType.FLOAT32)
              .setContent(gradient(size, size)))
          .build();
      pushes.put(size, push);
      ByteBuffer tcp = ByteBuffer.allocateDirect(push.getSerializedSize());
      tcp.put(0, push.toByteArray());
      tcpPayloads.put(size, tcp);
    }
    ps.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    stock.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
  }

  /** One call of a variant by trainer {@code t}; returns payload bytes moved. */
  long call(String variant, Trainer t, int size) throws IOException {
    switch (variant) {
      case TCP -> {
        ByteBuffer payload = tcpPayloads.get(size).duplicate().clear();
        t.header.clear();
        t.header.putLong(0, payload.remaining());
        ByteBuffer[] both = {t.header, payload};
        while (payload.hasRemaining()) {
          t.tcp.write(both);
        }
        t.ack.clear();
        while (t.ack.hasRemaining()) {
          if (t.tcp.read(t.ack) < 0) {
            throw new IOException("tcp sink closed");
          }
        }
      }
      case DISCARD -> ClientCalls.blockingUnaryCall(t.raw, discard, CallOptions.DEFAULT, pushes.get(size));
      case SEND -> PServerGrpc.newBlockingStub(t.pserver).sendGrads(pushes.get(size));
      case SEND_STOCK -> PServerGrpc.newBlockingStub(t.stock).sendGrads(pushes.get(size));
      case GET -> check(PServerGrpc.newBlockingStub(t.pserver).getParams(names(size)), size);
      case SOURCE -> check(ClientCalls.blockingUnaryCall(t.raw, source, CallOptions.DEFAULT, names(size)), size);
      case GET_STOCK -> check(PServerGrpc.newBlockingStub(t.stock).getParams(names(size)), size);
      default -> throw new IllegalArgumentException(variant);
    }
    return size;
  }

  private static GetParamsRequest names(int size) {
    return GetParamsRequest.newBuilder().addNames(name(size)).build();
  }

  private static void check(GetParamsResponse r, int size) {
    if (r.getParams(0).getContent().size() != size) {
      throw new IllegalStateException("got " + r.getParams(0).getContent().size() + " bytes, expected " + size);
    }
  }

  static boolean applies(String variant, int size) {
    return !(variant.equals(SEND_STOCK) || variant.equals(GET_STOCK)) || size == 1 << 20;
  }

  /** One measurement: bytes, seconds, calls and the server's allocation and CPU over it. */
  record Sample(long bytes, double seconds, long calls, long serverAllocated, long serverCpuNanos, long gcs,
      long zeroCopy, long copied, long poolAllocations) {
    double mbps() {
      return bytes / seconds / 1e6;
    }

    double allocPerByte() {
      return (double) serverAllocated / bytes;
    }

    double cpuNanosPerByte() {
      return (double) serverCpuNanos / bytes;
    }
  }

  Sample measure(String variant, int size, int n) throws Exception {
    long minCalls = size >= 64 << 20 ? 2 : 5;
    stats("begin");
    CountDownLatch go = new CountDownLatch(1);
    AtomicLong bytes = new AtomicLong(), calls = new AtomicLong();
    List<Thread> threads = new ArrayList<>();
    Throwable[] failure = new Throwable[1];
    long[] end = new long[n];
    for (int i = 0; i < n; i++) {
      Trainer t = trainers.get(i);
      int k = i;
      Thread th = new Thread(() -> {
        try {
          go.await();
          long t0 = System.nanoTime(), c = 0;
          while (c < minCalls || System.nanoTime() - t0 < millis * 1_000_000L) {
            bytes.addAndGet(call(variant, t, size));
            c++;
          }
          calls.addAndGet(c);
          end[k] = System.nanoTime();
        } catch (Throwable e) {
          failure[0] = e;
        }
      }, "trainer-" + i);
      threads.add(th);
      th.start();
    }
    long start = System.nanoTime();
    go.countDown();
    for (Thread th : threads) {
      th.join();
    }
    if (failure[0] != null) {
      throw new IllegalStateException(variant + " " + size + " x" + n + " failed", failure[0]);
    }
    long last = 0;
    for (long e : end) {
      last = Math.max(last, e);
    }
    JsonObject s = JsonParser.parseString(stats("end")).getAsJsonObject();
    return new Sample(bytes.get(), (last - start) / 1e9, calls.get(), s.get("allocatedBytes").getAsLong(),
        s.get("cpuNanos").getAsLong(), s.get("gcs").getAsLong(), s.get("zeroCopyMessages").getAsLong(),
        s.get("copiedMessages").getAsLong(), s.get("poolAllocations").getAsLong());
  }

  String stats(String what) {
    return new String(ClientCalls.blockingUnaryCall(trainers.get(0).raw, TransportBenchServer.statsMethod(),
        CallOptions.DEFAULT, what.getBytes(StandardCharsets.UTF_8)), StandardCharsets.UTF_8);
  }

  /** Per-round latencies (ns) of one variant: p50 and p99 of {@code latencyCalls} calls. */
  double[] latency(String variant) {
    Trainer t = trainers.get(0);
    SendGradsRequest one = pushes.get(LATENCY_BYTES);
    Gradient g = one.getGrads(0);
    byte[] echo = new byte[LATENCY_BYTES];
    PServerGrpc.PServerBlockingStub ps = PServerGrpc.newBlockingStub(t.pserver);
    MethodDescriptor<byte[], byte[]> echoMethod = TransportBenchServer.echoMethod();
    double[] ns = new double[latencyCalls];
    for (int i = 0; i < latencyCalls; i++) {
      long t0 = System.nanoTime();
      if (variant.equals(LAT_SEND)) {
        ps.sendGrad(g);
      } else {
        ClientCalls.blockingUnaryCall(t.raw, echoMethod, CallOptions.DEFAULT, echo);
      }
      ns[i] = System.nanoTime() - t0;
    }
    return new double[] {Stats.quantile(ns, 0.5), Stats.quantile(ns, 0.99)};
  }

  /** Everything, interleaved; the raw samples as JSON. */
  JsonObject run(PrintWriter log) throws Exception {
    JsonObject out = new JsonObject();
    JsonObject throughput = new JsonObject();
    Gson gson = new Gson();
    for (int size : SIZES) {
      for (int n : TRAINERS) {
        List<String> vs = new ArrayList<>();
        for (String v : VARIANTS) {
          if (applies(v, size)) {
            vs.add(v);
          }
        }
        Map<String, List<Sample>> samples = new LinkedHashMap<>();
        for (int r = -1; r < rounds; r++) { // round -1: warm-up, not recorded
          for (int j = 0; j < vs.size(); j++) {
            String v = vs.get(Math.floorMod(j + r, vs.size()));
            Sample s = measure(v, size, n);
            if (r >= 0) {
              samples.computeIfAbsent(v, k -> new ArrayList<>()).add(s);
            }
          }
          if (r >= 0) {
            log.printf("[transport] %s x%d round %d: %s%n", Stats.size(size, "B"), n, r,
                summary(samples, r));
            log.flush();
          }
        }
        JsonObject cell = new JsonObject();
        samples.forEach((v, list) -> cell.add(v, gson.toJsonTree(list)));
        throughput.add(size + "/" + n, cell);
      }
    }
    out.add("throughput", throughput);

    JsonObject lat = new JsonObject();
    String[] lv = {LAT_SEND, LAT_ECHO};
    for (String v : lv) { // warm-up
      latency(v);
    }
    Map<String, List<double[]>> ls = new LinkedHashMap<>();
    for (int r = 0; r < rounds; r++) {
      for (int j = 0; j < lv.length; j++) {
        String v = lv[(j + r) % lv.length];
        ls.computeIfAbsent(v, k -> new ArrayList<>()).add(latency(v));
      }
      log.printf("[transport] latency round %d: SendGrad p50 %.0f us, echo p50 %.0f us%n", r,
          ls.get(LAT_SEND).get(r)[0] / 1e3, ls.get(LAT_ECHO).get(r)[0] / 1e3);
      log.flush();
    }
    ls.forEach((v, list) -> lat.add(v, gson.toJsonTree(list)));
    out.add("latency", lat);
    out.addProperty("kernels", JsonParser.parseString(stats("begin")).getAsJsonObject().get("kernels").getAsString());
    return out;
  }

  private static String summary(Map<String, List<Sample>> samples, int r) {
    StringBuilder b = new StringBuilder();
    samples.forEach((v, list) -> {
      if (list.size() > r) {
        Sample s = list.get(r);
        b.append(v).append(' ').append(Stats.f(s.mbps(), 0)).append(" MB/s (")
            .append(Stats.f(s.allocPerByte(), 3)).append(" B/B); ");
      }
    });
    return b.toString();
  }

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    Path outDir = Path.of(args[1]);
    String header = args[2];
    List<String> serverFlags = List.of(args).subList(3, args.length);
    boolean full = mode.equals("full");
    int rounds = full ? 11 : 7;
    long millis = full ? 1500 : 500;
    int latencyCalls = full ? 5000 : 2000;

    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(serverFlags);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(TransportBenchServer.class.getName());
    Files.createDirectories(Path.of("target"));
    Process server = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    Path serverLog = Path.of("target", "transport-server.log");
    PrintWriter log = new PrintWriter(System.err, true);
    try {
      Ports ports = awaitReady(server, serverLog);
      TransportBench b = new TransportBench(ports, rounds, millis, latencyCalls);
      b.setUp(TRAINERS[TRAINERS.length - 1]);
      long t0 = System.nanoTime();
      JsonObject result = b.run(log);
      result.addProperty("header", header);
      result.addProperty("mode", mode);
      result.addProperty("rounds", rounds);
      result.addProperty("millisPerMeasurement", millis);
      result.addProperty("latencyCallsPerRound", latencyCalls);
      result.addProperty("seconds", (System.nanoTime() - t0) / 1e9);
      for (Trainer t : b.trainers) {
        t.close();
      }
      Files.createDirectories(outDir);
      Files.writeString(outDir.resolve("transport.json"), new GsonBuilder().setPrettyPrinting().create().toJson(result));
      TransportReport report = new TransportReport(result);
      Files.writeString(outDir.resolve("transport.md"), report.markdown());
      Files.writeString(outDir.resolve("transport.svg"), report.svg());
      System.out.print(report.markdown());
    } finally {
      server.getOutputStream().close();
      if (!server.waitFor(10, TimeUnit.SECONDS)) {
        server.destroyForcibly();
      }
    }
  }

  /** Waits for the server's READY line ({@code pserver=P stock=P raw=P tcp=P}); its output goes to {@code log}. */
  static Ports awaitReady(Process server, Path log) throws IOException {
    Map<String, Integer> p = new LinkedHashMap<>();
    for (String kv : Children.awaitReady(server, log).split(" ")) {
      String[] a = kv.split("=");
      p.put(a[0], Integer.parseInt(a[1]));
    }
    return new Ports(p.get("pserver"), p.get("stock"), p.get("raw"), p.get("tcp"));
  }
}
