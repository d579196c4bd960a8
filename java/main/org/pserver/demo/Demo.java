package org.pserver.demo;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import org.pserver.client.EtcdDirectory;
import org.pserver.client.EtcdSelector;
import org.pserver.client.InitSelector;
import org.pserver.client.PServerClient;
import org.pserver.client.PServerDirectory;
import org.pserver.cluster.EtcdJob;
import org.pserver.cluster.EtcdKeys;
import org.pserver.cluster.EtcdSecurity;
import org.pserver.kernels.Kernels;
import org.pserver.proto.paddle.AdamConfig;
import org.pserver.proto.paddle.ConstLrConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.node.PServerNode;
import org.pserver.service.Parameter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The end-to-end demo: pservers and asynchronous trainers learning the {@link TeacherTask} with an
 * {@link Mlp} whose parameters live on the pservers. Used by {@code pserver demo} and by the
 * fault-tolerance tests (which pass their own pserver addresses).
 */
public final class Demo {
  private static final Logger LOG = LoggerFactory.getLogger(Demo.class);

  /** Demo settings. */
  public record Options(
      int pservers,
      int trainers,
      Duration duration,
      int batch,
      long seed,
      Path outDir,
      List<String> pserverAddresses,
      String etcdEndpoints) {
    /** The defaults of {@code pserver demo}. */
    public static Options defaults(Path outDir) {
      return new Options(2, 4, Duration.ofSeconds(40), 32, 7, outDir, List.of(), null);
    }

    public Options withDuration(Duration d) {
      return new Options(pservers, trainers, d, batch, seed, outDir, pserverAddresses, etcdEndpoints);
    }

    /** Trains against running pservers at these addresses instead of starting any. */
    public Options withPservers(List<String> addresses) {
      return new Options(addresses.size(), trainers, duration, batch, seed, outDir, addresses, etcdEndpoints);
    }

    boolean etcd() {
      return etcdEndpoints != null && !etcdEndpoints.isBlank();
    }
  }

  /** What a run achieved. */
  public record Result(
      double accuracy, long updates, double seconds, double finalLoss, long bytes, long parameters, Path chart, String kernels, String timeSplit, List<String> failures) {
    public double updatesPerSecond() {
      return updates / seconds;
    }
  }

  /**
   * The accuracy the demo must reach against the teacher (chance is 0.1): {@code pserver demo}
   * fails below it, and the fault-tolerance tests hold training with injected faults to it.
   */
  public static final double ACCURACY_BAR = 0.6;

  /** The model every trainer and the pservers agree on: 32 -> 1024 -> 896 -> 10, 961,162 parameters. */
  public static Mlp model() {
    return new Mlp(32, 1024, 896, 10);
  }

  public static TeacherTask task(long seed) {
    return new TeacherTask(32, 8, 10, seed);
  }

  /** Adam, learning rate 1e-3: the config every parameter is initialized with. */
  public static byte[] optimizerConfig() {
    return OptimizerConfig.newBuilder()
        .setOptimizer(OptimizerConfig.Optimizer.Adam)
        .setAdam(AdamConfig.newBuilder().setBeta1(0.9).setBeta2(0.999).setEpsilon(1e-8))
        .setLrPolicy(OptimizerConfig.LrPolicy.Const)
        .setConstLr(ConstLrConfig.newBuilder().setLearningRate(1e-3))
        .build()
        .toByteArray();
  }

  private Demo() {}

  /**
   * Runs the demo, printing progress to {@code out}: starts the pservers in this process
   * (standalone, or registered in etcd), unless addresses of running ones are given or there are
   * none to start. Pservers it starts begin fresh: their checkpoint directories under {@code
   * outDir} are emptied, and with etcd the demo owns the job there, so it first deletes what an
   * earlier job left (see {@link EtcdJob#reset}).
   */
  public static Result run(Options o, PrintStream out) throws Exception {
    Files.createDirectories(o.outDir());
    List<PServerNode> nodes = new ArrayList<>();
    List<String> addresses = new ArrayList<>(o.pserverAddresses());
    try {
      if (addresses.isEmpty() && o.etcd() && o.pservers() > 0) {
        EtcdJob.reset(o.etcdEndpoints(), Duration.ofSeconds(10), EtcdSecurity.NONE);
        out.printf(Locale.ROOT, "pserver demo: starting its own pservers, so it owns the job in etcd %s: deleted %s, %s* and %s left by earlier runs%n",
            o.etcdEndpoints(), EtcdKeys.PS_DESIRED, EtcdKeys.CHECKPOINT_PREFIX, EtcdKeys.INIT_DONE);
      }
      if (addresses.isEmpty()) {
        for (int i = 0; i < o.pservers(); i++) {
          deleteTree(o.outDir().resolve("pserver-" + i)); // every demo run starts fresh
          PServerNode.Config c = PServerNode.Config.standalone(o.etcd() ? -1 : i, o.outDir().resolve("pserver-" + i))
              .withCheckpointInterval(Duration.ofSeconds(15));
          if (o.etcd()) {
            c = c.withEtcd(o.etcdEndpoints(), o.pservers(), 5).withAdvertiseHost("127.0.0.1");
          }
          PServerNode node = PServerNode.start(c);
          nodes.add(node);
          addresses.add("127.0.0.1:" + node.port());
        }
      }
      return train(o, addresses, out);
    } finally {
      // Every pserver is stopped even when one's final checkpoint fails; the failure is logged
      // and does not hide the training result.
      for (PServerNode n : nodes) {
        try {
          n.shutdown(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
          LOG.error("pserver {} did not stop cleanly: {}", n.index(), e.getMessage());
        }
      }
    }
  }

  private static void deleteTree(Path p) throws java.io.IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (java.util.stream.Stream<Path> s = Files.walk(p)) {
      for (Path q : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
        Files.delete(q);
      }
    }
  }

  private static PServerDirectory directory(Options o, List<String> addresses) throws Exception {
    if (!o.etcd()) {
      return PServerDirectory.of(addresses);
    }
    EtcdDirectory d = EtcdDirectory.connect(o.etcdEndpoints(), Duration.ofSeconds(5), Duration.ofSeconds(60));
    d.awaitAll(Duration.ofSeconds(60));
    return d;
  }

  private static Result train(Options o, List<String> addresses, PrintStream out) throws Exception {
    TeacherTask task = task(o.seed());
    byte[] config = optimizerConfig();
    DemoStats stats = new DemoStats(Math.max(1, o.trainers() * 5));
    long deadline = System.nanoTime() + o.duration().toNanos();
    List<DemoTrainer> trainers = new ArrayList<>();
    List<PServerClient> clients = new ArrayList<>();
    List<Thread> threads = new ArrayList<>();
    long parameters = model().size();
    PServerDirectory first = directory(o, addresses);
    out.printf(Locale.ROOT, "pserver demo: %d pservers%s, %d trainers, an MLP of %,d parameters in %d named tensors, kernels %s%n",
        first.size(), o.etcd() ? " through etcd " + o.etcdEndpoints() : "", o.trainers(), parameters, Mlp.NAMES.size(), Kernels.description());
    try {
      for (int t = 0; t < o.trainers(); t++) {
        DemoTrainer[] self = new DemoTrainer[1];
        PServerClient client = PServerClient.builder(t == 0 ? first : directory(o, addresses))
            .selector(o.etcd() ? new EtcdSelector(o.etcdEndpoints(), Duration.ofSeconds(5)) : InitSelector.fixed(t == 0))
            .reinitSource(Mlp.NAMES, name -> self[0].current(name))
            .build();
        clients.add(client);
        self[0] = new DemoTrainer(t, client, task, model(), o.batch(), config, () -> System.nanoTime() > deadline, stats);
        trainers.add(self[0]);
      }
      if (clients.get(0).beginInitParams()) {
        trainers.get(0).initializeParameters(o.seed());
      }
      for (int t = 0; t < trainers.size(); t++) {
        Thread th = new Thread(trainers.get(t), "trainer-" + t);
        th.setDaemon(true);
        threads.add(th);
        th.start();
      }
      Progress progress = new Progress(out, o.duration());
      while (threads.stream().anyMatch(Thread::isAlive)) {
        progress.show(stats);
        for (Thread th : threads) {
          th.join(250);
        }
      }
      progress.finish(stats);
      double seconds = stats.seconds();
      List<String> failures = stats.failures();
      double accuracy = evaluate(clients.get(0), task, o.seed());
      Path chart = o.outDir().resolve("loss.svg");
      Files.writeString(chart, LossChart.svg(stats.curve(), accuracy));
      return new Result(accuracy, stats.updates(), seconds, stats.lastLoss(), stats.bytes(), parameters, chart, Kernels.description(), stats.timeSplit(), failures);
    } finally {
      clients.forEach(PServerClient::close);
    }
  }

  /** Accuracy of the pservers' current model against the teacher on 2,000 unseen inputs. */
  public static double evaluate(PServerClient client, TeacherTask task, long seed) {
    Mlp m = model();
    List<Parameter> ps = client.getParams(Mlp.NAMES);
    for (int k = 0; k < 6; k++) {
      ps.get(k).content().duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(m.params[k]);
    }
    SplittableRandom r = new SplittableRandom(seed * 31 + 99_999);
    float[] x = new float[task.in];
    int right = 0, n = 2000;
    for (int i = 0; i < n; i++) {
      int y = task.sample(r, x);
      if (m.predict(x) == y) {
        right++;
      }
    }
    return (double) right / n;
  }

  /** A progress bar: redrawn in place on a terminal, one line every few seconds otherwise. */
  private static final class Progress {
    private final PrintStream out;
    private final Duration total;
    private final boolean terminal = System.console() != null;
    private long lastPrint;
    private long lastUpdates;
    private double lastSeconds;

    Progress(PrintStream out, Duration total) {
      this.out = out;
      this.total = total;
    }

    void show(DemoStats s) {
      long now = System.nanoTime();
      if (!terminal && now - lastPrint < 5_000_000_000L) {
        return;
      }
      lastPrint = now;
      out.print(line(s) + (terminal ? "\r" : System.lineSeparator()));
      out.flush();
    }

    void finish(DemoStats s) {
      out.println(line(s));
    }

    private String line(DemoStats s) {
      double secs = s.seconds();
      double frac = Math.min(1, secs / (total.toMillis() / 1000.0));
      int filled = (int) Math.round(frac * 30);
      long u = s.updates();
      double rate = secs > lastSeconds ? (u - lastUpdates) / (secs - lastSeconds) : 0;
      lastUpdates = u;
      lastSeconds = secs;
      String lossText = s.hasLoss() ? String.format(Locale.ROOT, "%.3f", s.lastLoss()) : "  -  ";
      return String.format(Locale.ROOT, "[%s%s] %3.0f%%  %6d updates  loss %s  %5.1f updates/s",
          "#".repeat(filled), ".".repeat(30 - filled), frac * 100, u, lossText, rate);
    }
  }

  /** A one-paragraph summary of a result. */
  public static String summary(Result r) {
    return String.format(Locale.ROOT,
        "done in %.1f s: %,d updates (%.1f/s), %.2f GB of gradients and parameters moved (%.0f MB/s); trainer time: %s%n"
            + "final loss %s; accuracy %.3f against the teacher's labels on 2,000 unseen inputs (chance 0.100, bar %.2f: %s)%n"
            + "kernels %s; loss curve: %s",
        r.seconds(), r.updates(), r.updatesPerSecond(), r.bytes() / 1e9, r.bytes() / 1e6 / r.seconds(), r.timeSplit(),
        Double.isNaN(r.finalLoss()) ? "- (too few updates for a curve point)" : String.format(Locale.ROOT, "%.3f", r.finalLoss()),
        r.accuracy(), ACCURACY_BAR, r.accuracy() >= ACCURACY_BAR ? "met" : "NOT met", r.kernels(), r.chart().toAbsolutePath());
  }
}
