package org.pserver.bench;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.ToDoubleFunction;
import org.pserver.ElementType;
import org.pserver.client.PServerClient;
import org.pserver.client.PServerDirectory;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.SendGradsRequest;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;

/**
 * {@code bench/blocks.sh}: does one big parameter scale with the pserver count? Issue 7's target:
 * a 256 MiB parameter on 2 pservers is pushed at least 1.6x as fast as on 1 pserver.
 *
 * <p>Starts three clusters of {@link BlockScalingServer} processes on 127.0.0.1 at the same time:
 * A with 1 pserver, B with 2, and A1 with 1 pserver whose client sends everything for a pserver in
 * one request (the client's behaviour before requests were cut to {@link
 * PServerClient.Builder#requestBytes}), for comparison. This JVM holds one {@link PServerClient}
 * per cluster (default block size, 1 MiB), initializes one float32 parameter of 256 MiB with Adam
 * on each (the client splits it into 256 blocks: all on the one pserver of A, 128 on each pserver
 * of B), then measures, after one warm-up round, rounds in which the six variants (push and pull,
 * each cluster) run back to back in a rotating order, so the clusters are measured side by side. A push is
 * {@code sendGrads} of the whole 256 MiB gradient, a pull {@code getParams} of the whole
 * parameter; a client interceptor counts the RPCs each call made, the blocks they carried and
 * their durations. Writes {@code blocks.json} (every sample) and {@code blocks.md}.
 *
 * <p>Usage: {@code BlockScalingBench <short|full> <out-dir> <header> <server-jvm-flags...>}, or
 * {@code BlockScalingBench render <blocks.json> <out-dir>} to re-render a saved run.
 */
public final class BlockScalingBench {
  static final String NAME = "embedding";
  static final int BYTES = 256 << 20;
  static final int ELEMENTS = BYTES / 4;
  static final int BLOCK_BYTES = 1 << 20;
  static final double TARGET = 1.6;
  static final String PUSH = "push";
  static final String PULL = "pull";

  /** RPC counts, blocks carried and summed durations of one method, over a cluster's channels. */
  static final class Meter {
    final LongAdder calls = new LongAdder();
    final LongAdder blocks = new LongAdder();
    final LongAdder nanos = new LongAdder();
    final LongAdder receiveNanos = new LongAdder();
    final LongAdder workNanos = new LongAdder();

    long[] snapshot() {
      return new long[] {calls.sum(), blocks.sum(), nanos.sum(), receiveNanos.sum(), workNanos.sum()};
    }
  }

  /** Times every SendGrads and GetParams call and counts the blocks in its request. */
  static final class RpcMeter implements ClientInterceptor {
    final Meter push = new Meter();
    final Meter pull = new Meter();

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      String m = method.getBareMethodName();
      Meter meter = "SendGrads".equals(m) ? push : "GetParams".equals(m) ? pull : null;
      ClientCall<Q, R> call = next.newCall(method, options);
      if (meter == null) {
        return call;
      }
      return new ForwardingClientCall.SimpleForwardingClientCall<>(call) {
        long start;

        @Override
        public void start(Listener<R> listener, Metadata headers) {
          start = System.nanoTime();
          super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
            @Override
            public void onClose(Status status, Metadata trailers) {
              meter.nanos.add(System.nanoTime() - start);
              meter.calls.increment();
              String receive = trailers.get(BlockScalingServer.RECEIVE), work = trailers.get(BlockScalingServer.WORK);
              if (receive != null) {
                meter.receiveNanos.add(Long.parseLong(receive));
              }
              if (work != null) {
                meter.workNanos.add(Long.parseLong(work));
              }
              super.onClose(status, trailers);
            }
          }, headers);
        }

        @Override
        public void sendMessage(Q message) {
          if (message instanceof SendGradsRequest r) {
            meter.blocks.add(r.getGradsCount());
          } else if (message instanceof GetParamsRequest r) {
            meter.blocks.add(r.getNamesCount());
          }
          super.sendMessage(message);
        }
      };
    }
  }

  /** One cluster: its server processes and this JVM's client of them. */
  static final class Cluster {
    final String label;
    final int pservers;
    /** The client's request size; Long.MAX_VALUE: one request per pserver. */
    final long requestBytes;
    final List<Integer> ports = new ArrayList<>();
    final RpcMeter meter = new RpcMeter();
    String kernels;
    PServerClient client;

    Cluster(String label, int pservers, long requestBytes) {
      this.label = label;
      this.pservers = pservers;
      this.requestBytes = requestBytes;
    }

    void connect() {
      List<String> addresses = new ArrayList<>();
      for (int p : ports) {
        addresses.add("127.0.0.1:" + p);
      }
      // The client's default channel settings, plus the meter.
      client = PServerClient.builder(PServerDirectory.of(addresses))
          .trainerId("bench-" + label)
          .callTimeout(Duration.ofMinutes(2))
          .blockBytes(BLOCK_BYTES)
          .requestBytes(requestBytes)
          .channelFactory(address -> NettyChannelBuilder.forTarget(address)
              .usePlaintext()
              .maxInboundMessageSize(512 << 20)
              .keepAliveTime(30, TimeUnit.SECONDS)
              .intercept(meter)
              .build())
          .build();
    }
  }

  /** One measurement: {@code calls} back-to-back pushes or pulls of the whole parameter. */
  record Sample(long bytes, double seconds, int calls, long rpcs, long blocks, double rpcSeconds,
      double serverReceiveSeconds, double serverWorkSeconds, double gcSeconds, double cpuSeconds) {
    double mbps() {
      return bytes / seconds / 1e6;
    }
  }

  private final List<Cluster> clusters;
  private final int rounds;
  private final int callsPerMeasurement;
  private final ByteBuffer gradient;
  /** CPU seconds used so far by this JVM and every pserver process. */
  private final java.util.function.DoubleSupplier cpuClock;

  BlockScalingBench(List<Cluster> clusters, int rounds, int callsPerMeasurement, java.util.function.DoubleSupplier cpuClock) {
    this.clusters = clusters;
    this.cpuClock = cpuClock;
    this.rounds = rounds;
    this.callsPerMeasurement = callsPerMeasurement;
    this.gradient = ByteBuffer.allocateDirect(BYTES).order(ByteOrder.LITTLE_ENDIAN);
  }

  private static void fill(ByteBuffer b, long seed, float scale, float offset) {
    FloatBuffer f = b.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
    SplittableRandom rnd = new SplittableRandom(seed);
    for (int i = 0; i < ELEMENTS; i++) {
      f.put(i, offset + scale * (float) rnd.nextDouble());
    }
  }

  /** Initializes the parameter on every cluster from the same weights; returns weight 0. */
  float setUp(PrintWriter log) {
    fill(gradient, 1, 0.1f, -0.05f); // the initial weights, in the buffer the gradient reuses later
    float w0 = gradient.getFloat(0);
    byte[] config = TransportBench.adam(); // beta1 0.9, beta2 0.999, epsilon 1e-8, lr 1e-3
    for (Cluster c : clusters) {
      long t0 = System.nanoTime();
      c.client.initParams(List.of(new ParameterWithConfig(new Parameter(NAME, ElementType.FLOAT32, gradient), config)));
      c.client.finishInitParams();
      log.printf("[blocks] cluster %s (%d pserver%s): initialized %s in %.1f s%n", c.label, c.pservers,
          c.pservers == 1 ? "" : "s", Stats.size(BYTES, "B"), (System.nanoTime() - t0) / 1e9);
    }
    fill(gradient, 2, 1e-3f, 0.5e-3f); // gradient values in [0.5e-3, 1.5e-3): small and finite
    return w0;
  }

  private static double gcSeconds() {
    long ms = 0;
    for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
      ms += Math.max(0, gc.getCollectionTime());
    }
    return ms / 1e3;
  }

  Sample measure(Cluster c, String op) {
    Meter m = op.equals(PUSH) ? c.meter.push : c.meter.pull;
    long[] before = m.snapshot();
    double gc0 = gcSeconds();
    double cpu0 = cpuClock.getAsDouble();
    long t0 = System.nanoTime();
    for (int i = 0; i < callsPerMeasurement; i++) {
      if (op.equals(PUSH)) {
        c.client.sendGrads(List.of(new Gradient(NAME, ElementType.FLOAT32, gradient)));
      } else {
        check(c, c.client.getParams(List.of(NAME)).get(0));
      }
    }
    double seconds = (System.nanoTime() - t0) / 1e9;
    double cpuSeconds = cpuClock.getAsDouble() - cpu0;
    long[] after = m.snapshot();
    return new Sample((long) BYTES * callsPerMeasurement, seconds, callsPerMeasurement, after[0] - before[0],
        after[1] - before[1], (after[2] - before[2]) / 1e9, (after[3] - before[3]) / 1e9, (after[4] - before[4]) / 1e9,
        gcSeconds() - gc0, cpuSeconds);
  }

  private static float check(Cluster c, Parameter p) {
    if (p.content().remaining() != BYTES) {
      throw new IllegalStateException("cluster " + c.label + " returned " + p.content().remaining() + " bytes, expected " + BYTES);
    }
    ByteBuffer b = p.content().duplicate().order(ByteOrder.LITTLE_ENDIAN);
    float first = b.getFloat(b.position()), last = b.getFloat(b.position() + BYTES - 4);
    if (!Float.isFinite(first) || !Float.isFinite(last)) {
      throw new IllegalStateException("cluster " + c.label + ": non-finite weights " + first + ", " + last);
    }
    return first;
  }

  static String variant(Cluster c, String op) {
    return c.label + " " + op;
  }

  JsonObject run(PrintWriter log) {
    List<Object[]> variants = new ArrayList<>(); // {cluster, op}
    for (String op : new String[] {PUSH, PULL}) {
      for (Cluster c : clusters) {
        variants.add(new Object[] {c, op});
      }
    }
    Map<String, List<Sample>> samples = new LinkedHashMap<>();
    for (int r = -1; r < rounds; r++) { // round -1: warm-up, not recorded
      StringBuilder line = new StringBuilder();
      for (int j = 0; j < variants.size(); j++) {
        Object[] v = variants.get(Math.floorMod(j + r, variants.size()));
        Cluster c = (Cluster) v[0];
        String op = (String) v[1];
        Sample s = measure(c, op);
        line.append(variant(c, op)).append(' ').append(Stats.f(s.mbps(), 0)).append(" MB/s; ");
        if (r >= 0) {
          samples.computeIfAbsent(variant(c, op), k -> new ArrayList<>()).add(s);
        }
      }
      log.printf("[blocks] %s: %s%n", r < 0 ? "warm-up" : "round " + r, line);
      log.flush();
    }
    JsonObject out = new JsonObject();
    Gson gson = new Gson();
    JsonObject cells = new JsonObject();
    samples.forEach((v, list) -> cells.add(v, gson.toJsonTree(list)));
    out.add("samples", cells);
    JsonArray cl = new JsonArray();
    for (Cluster c : clusters) {
      JsonObject o = new JsonObject();
      o.addProperty("label", c.label);
      o.addProperty("pservers", c.pservers);
      o.addProperty("kernels", c.kernels);
      cl.add(o);
    }
    out.add("clusters", cl);
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Processes

  /** Starts one pserver process; its output goes to {@code log} once it has said READY. */
  static Process launch(List<String> serverFlags, int index) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(serverFlags);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(BlockScalingServer.class.getName());
    cmd.add(Integer.toString(index));
    return new ProcessBuilder(cmd).redirectErrorStream(true).start();
  }

  /** Waits for a server's READY line: {port, kernels}; its output goes to {@code log}. */
  static String[] awaitReady(Process server, Path log) throws IOException {
    String line = Children.awaitReady(server, log); // "port=P kernels=K"
    int k = line.indexOf(" kernels=");
    return new String[] {line.substring("port=".length(), k), line.substring(k + " kernels=".length())};
  }

  /**
   * {CPU seconds of this JVM and the pservers, busy jiffies of the machine, all jiffies of the
   * machine} (the last two from /proc/stat, 0 where there is none).
   */
  static double[] cpu(List<Process> processes) {
    double ours = ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime() / 1e9;
    for (Process p : processes) {
      ours += p.info().totalCpuDuration().map(d -> d.toNanos() / 1e9).orElse(0.0);
    }
    double busy = 0, total = 0;
    try {
      String[] f = Files.readAllLines(Path.of("/proc/stat")).get(0).trim().split("\\s+");
      // cpu user nice system idle iowait irq softirq steal ...
      for (int i = 1; i < Math.min(f.length, 9); i++) {
        double v = Double.parseDouble(f[i]);
        total += v;
        if (i != 4 && i != 5) {
          busy += v;
        }
      }
    } catch (IOException | RuntimeException e) {
      busy = total = 0;
    }
    return new double[] {ours, busy, total};
  }

  static void stop(List<Process> processes) {
    for (Process p : processes) {
      try {
        p.getOutputStream().close(); // the server exits when its stdin closes
      } catch (IOException e) {
        // already gone
      }
    }
    for (Process p : processes) {
      try {
        if (!p.waitFor(10, TimeUnit.SECONDS)) {
          p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        p.destroyForcibly();
      }
    }
  }

  public static void main(String[] args) throws Exception {
    if (args[0].equals("render")) {
      JsonObject run = JsonParser.parseString(Files.readString(Path.of(args[1]))).getAsJsonObject();
      Files.writeString(Path.of(args[2]).resolve("blocks.md"), markdown(run));
      return;
    }
    String mode = args[0];
    Path outDir = Path.of(args[1]);
    String header = args[2];
    List<String> serverFlags = List.of(args).subList(3, args.length);
    boolean full = mode.equals("full");
    int rounds = full ? 11 : 7;
    int calls = full ? 5 : 3;
    PrintWriter log = new PrintWriter(System.err, true);

    List<Process> processes = new CopyOnWriteArrayList<>();
    Thread killer = new Thread(() -> processes.forEach(Process::destroyForcibly), "kill-pservers");
    Runtime.getRuntime().addShutdownHook(killer);
    long cut = PServerClient.DEFAULT_REQUEST_BYTES;
    List<Cluster> clusters = List.of(new Cluster("A", 1, cut), new Cluster("B", 2, cut), new Cluster("A1", 1, Long.MAX_VALUE));
    try {
      Files.createDirectories(Path.of("target"));
      List<CompletableFuture<String[]>> ready = new ArrayList<>();
      for (Cluster c : clusters) {
        for (int i = 0; i < c.pservers; i++) {
          Process p = launch(serverFlags, i);
          processes.add(p);
          Path serverLog = Path.of("target", "blocks-server-" + c.label + i + ".log");
          ready.add(CompletableFuture.supplyAsync(() -> {
            try {
              return awaitReady(p, serverLog);
            } catch (IOException e) {
              throw new java.io.UncheckedIOException(e);
            }
          }));
        }
      }
      int k = 0;
      for (Cluster c : clusters) {
        for (int i = 0; i < c.pservers; i++) {
          String[] r = ready.get(k++).get(120, TimeUnit.SECONDS);
          c.ports.add(Integer.parseInt(r[0]));
          c.kernels = r[1];
        }
        c.connect();
        log.printf("[blocks] cluster %s: pservers on 127.0.0.1 ports %s, kernels %s%n", c.label, c.ports, c.kernels);
      }

      BlockScalingBench b = new BlockScalingBench(clusters, rounds, calls, () -> cpu(processes)[0]);
      float w0 = b.setUp(log);
      long t0 = System.nanoTime();
      double[] cpu0 = cpu(processes);
      JsonObject result = b.run(log);
      double[] cpu1 = cpu(processes);
      double seconds = (System.nanoTime() - t0) / 1e9;
      JsonObject cpu = new JsonObject();
      cpu.addProperty("wallSeconds", seconds);
      cpu.addProperty("benchCpuSeconds", cpu1[0] - cpu0[0]);
      if (cpu0[2] > 0 && cpu1[2] > cpu0[2]) {
        cpu.addProperty("machineBusyFraction", (cpu1[1] - cpu0[1]) / (cpu1[2] - cpu0[2]));
      }
      result.add("cpu", cpu);
      // Sanity: the pushes were applied (Adam moved weight 0) and nothing went NaN.
      JsonObject applied = new JsonObject();
      for (Cluster c : clusters) {
        float now = check(c, c.client.getParams(List.of(NAME)).get(0));
        if (now == w0) {
          throw new IllegalStateException("cluster " + c.label + ": weight 0 did not move: pushes were not applied");
        }
        applied.addProperty(c.label, "weight 0: " + w0 + " -> " + now);
      }
      result.add("applied", applied);
      result.addProperty("header", header);
      result.addProperty("mode", mode);
      result.addProperty("rounds", rounds);
      result.addProperty("callsPerMeasurement", calls);
      result.addProperty("parameterBytes", BYTES);
      result.addProperty("blockBytes", BLOCK_BYTES);
      result.addProperty("requestBytes", cut);
      result.addProperty("grpcVersion", io.grpc.internal.GrpcUtil.IMPLEMENTATION_VERSION);
      result.addProperty("serverJvmFlags", String.join(" ", serverFlags));
      result.addProperty("clientJvmFlags", String.join(" ", ManagementFactory.getRuntimeMXBean().getInputArguments()));
      result.addProperty("cores", Runtime.getRuntime().availableProcessors());
      result.addProperty("seconds", seconds);
      for (Cluster c : clusters) {
        c.client.close();
      }
      Files.createDirectories(outDir);
      Files.writeString(outDir.resolve("blocks.json"), new GsonBuilder().setPrettyPrinting().create().toJson(result));
      String md = markdown(result);
      Files.writeString(outDir.resolve("blocks.md"), md);
      System.out.print(md);
    } finally {
      stop(processes);
      try {
        Runtime.getRuntime().removeShutdownHook(killer);
      } catch (IllegalStateException e) {
        // already shutting down: the hook runs anyway
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Report

  static double[] series(JsonObject run, String variant, ToDoubleFunction<JsonObject> f) {
    return Children.each(run.getAsJsonObject("samples").getAsJsonArray(variant), f);
  }

  static double per(JsonObject s, String a, String b) {
    return s.get(a).getAsDouble() / s.get(b).getAsDouble();
  }

  static String markdown(JsonObject run) {
    List<String[]> cl = new ArrayList<>();
    for (var e : run.getAsJsonArray("clusters")) {
      JsonObject o = e.getAsJsonObject();
      cl.add(new String[] {o.get("label").getAsString(), o.get("pservers").getAsString(), o.get("kernels").getAsString()});
    }
    int rounds = run.get("rounds").getAsInt();
    int calls = run.get("callsPerMeasurement").getAsInt();
    long bytes = run.get("parameterBytes").getAsLong();
    long block = run.get("blockBytes").getAsLong();
    StringBuilder b = new StringBuilder();
    b.append(run.get("header").getAsString()).append("\n\n");
    b.append("One float32 parameter of ").append(Stats.size(bytes, "B")).append(" (").append(Stats.size(bytes / 4, ""))
        .append(" elements) with Adam (beta1 0.9, beta2 0.999, epsilon 1e-8, constant learning rate 1e-3), pushed and ")
        .append("pulled through `PServerClient` with its default block size of ").append(Stats.size(block, "B"))
        .append(", so the client splits it into ").append(bytes / block).append(" blocks over all pservers of a cluster, ")
        .append("and its default request size of ").append(Stats.size(run.get("requestBytes").getAsLong(), "B"))
        .append(", so it sends them in requests of ").append(run.get("requestBytes").getAsLong() / block)
        .append(" blocks, two in flight per pserver. ")
        .append("Three clusters run at the same time as separate JVMs on 127.0.0.1 (standalone, no etcd, no checkpoints; ")
        .append("`BlockScalingServer`: `pserver serve`'s service and server settings, bound to loopback only): ")
        .append("cluster A has 1 pserver, cluster B 2, and cluster A1 1 pserver whose client puts all blocks of a ")
        .append("pserver in one request, as the client did before requests were cut. One client JVM holds one client ")
        .append("per cluster (default channel settings, grpc-java ").append(run.get("grpcVersion").getAsString()).append("). A push is one ")
        .append("`sendGrads` of the whole gradient (values in [0.5e-3, 1.5e-3)), a pull one `getParams` of the whole ")
        .append("parameter, assembled into one buffer. ").append(rounds).append(" rounds after one warm-up round; in a ")
        .append("round the six variants (push and pull on each cluster) run back to back in a rotating order, ")
        .append(calls).append(" calls each. Figures are medians over rounds; ratios are medians of per-round B/A ratios, ")
        .append("[min-max]. MB/s counts payload bytes (10^6 bytes per MB). Server kernels: ").append(cl.get(0)[2])
        .append(". Server JVMs: `").append(run.get("serverJvmFlags").getAsString()).append("`. The machine has ")
        .append(run.get("cores").getAsInt()).append(" cores, shared by the client JVM and all pserver JVMs ")
        .append("(the idle clusters' pservers are idle while another is measured): cluster B's two pservers and ")
        .append("the client that feeds them compete for the same ").append(run.get("cores").getAsInt())
        .append(" cores, so this measures scaling on a machine smaller than the deployment it models.");
    JsonObject cpu = run.getAsJsonObject("cpu");
    if (cpu != null) {
      int cores = run.get("cores").getAsInt();
      double wall = cpu.get("wallSeconds").getAsDouble();
      double ours = cpu.get("benchCpuSeconds").getAsDouble() / wall;
      int jvms = 1;
      for (String[] c : cl) {
        jvms += Integer.parseInt(c[1]);
      }
      b.append(" During the measured rounds (").append(Stats.f(wall, 0)).append(" s) this bench's ").append(jvms).append(" JVMs used ")
          .append(Stats.f(ours, 2)).append(" of the ").append(cores).append(" cores on average");
      if (cpu.has("machineBusyFraction")) {
        double busy = cpu.get("machineBusyFraction").getAsDouble() * cores;
        b.append(", and the whole machine ").append(Stats.f(busy, 2)).append(" (other processes: about ")
            .append(Stats.f(Math.max(0, busy - ours), 2)).append(" cores)");
      }
      b.append('.');
      if (ours >= 0.85 * cores) {
        b.append(" The cores were saturated: a second pserver on this machine can only share them with the first ")
            .append("and the client, so here B / A measures the cost of a second process more than scaling.");
      }
    }
    b.append("\n\n");

    b.append("### Throughput, MB/s\n\n");
    b.append("| cluster | pservers | push MB/s | pull MB/s |\n|---|---:|---:|---:|\n");
    for (String[] c : cl) {
      b.append("| ").append(c[0]).append(" | ").append(c[1]).append(" | ")
          .append(Stats.f(Stats.median(series(run, c[0] + " " + PUSH, Children::mbps)), 0)).append(" | ")
          .append(Stats.f(Stats.median(series(run, c[0] + " " + PULL, Children::mbps)), 0)).append(" |\n");
    }
    double[] pushRatio = ratio(run, PUSH), pullRatio = ratio(run, PULL);
    b.append("| B / A, per-round ratio | | ").append(Stats.range(pushRatio, 2)).append(" | ")
        .append(Stats.range(pullRatio, 2)).append(" |\n");
    b.append("| A / A1 (cut requests / one request), per-round ratio | | ").append(Stats.range(ratio(run, "A", "A1", PUSH), 2))
        .append(" | ").append(Stats.range(ratio(run, "A", "A1", PULL), 2)).append(" |\n\n");

    b.append("### How the client sent the calls (client interceptor, medians over rounds)\n\n");
    b.append("RPC time / call time: the summed durations of a call's RPCs over the call's wall time; about 1 ")
        .append("when there is one RPC, up to the pserver count when the RPCs to different pservers fully ")
        .append("overlap. Server receive and server work come from the pservers' timing interceptor (call trailers): ")
        .append("receive runs from the call's start on the pserver to its parsed request, work from the client's ")
        .append("half-close to the reply (push: checks and Adam over every block; pull: copying the weights into ")
        .append("gRPC's send buffers). Cores busy: CPU time of the client JVM and every pserver JVM over the ")
        .append("measurement's wall time (at most ").append(run.get("cores").getAsInt()).append(").\n\n");
    b.append("| cluster | call | RPCs per call | blocks per RPC | ms per call | ms per RPC | server receive ms per RPC | server work ms per RPC | RPC time / call time | client GC ms per call | cores busy |\n");
    b.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (String op : new String[] {PUSH, PULL}) {
      for (String[] c : cl) {
        String v = c[0] + " " + op;
        b.append("| ").append(c[0]).append(" (").append(c[1]).append(") | ").append(op).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> per(s, "rpcs", "calls"))), 2)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> per(s, "blocks", "rpcs"))), 1)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> 1e3 * per(s, "seconds", "calls"))), 0)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> 1e3 * per(s, "rpcSeconds", "rpcs"))), 0)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> 1e3 * per(s, "serverReceiveSeconds", "rpcs"))), 0)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> 1e3 * per(s, "serverWorkSeconds", "rpcs"))), 0)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> per(s, "rpcSeconds", "seconds"))), 2)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> 1e3 * per(s, "gcSeconds", "calls"))), 0)).append(" | ")
            .append(Stats.f(Stats.median(series(run, v, s -> s.has("cpuSeconds") ? per(s, "cpuSeconds", "seconds") : Double.NaN)), 2)).append(" |\n");
      }
    }
    b.append('\n');

    b.append("### Targets\n\n");
    b.append("| target | this run | goal | met |\n|---|---:|---:|:---:|\n");
    double r = Stats.median(pushRatio);
    b.append("| push throughput of a ").append(Stats.size(bytes, "B")).append(" parameter, 2 pservers / 1 pserver | ")
        .append(Stats.f(r, 2)).append(" | >= ").append(Stats.f(TARGET, 2)).append(" | ")
        .append(r >= TARGET ? "yes" : "**no**").append(" |\n");
    return b.toString();
  }

  static double[] ratio(JsonObject run, String op) {
    return ratio(run, "B", "A", op);
  }

  static double[] ratio(JsonObject run, String over, String under, String op) {
    return Stats.ratios(series(run, over + " " + op, Children::mbps), series(run, under + " " + op, Children::mbps));
  }
}
