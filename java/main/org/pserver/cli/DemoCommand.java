package org.pserver.cli;

import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import org.pserver.demo.Demo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code pserver demo}: trains a model end to end on pservers with asynchronous trainers and
 * reports the loss curve, the accuracy against the known answer, the kernels and the throughput.
 */
@Command(
    name = "demo",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
      "Trains an MLP (~1 M parameters in 6 named tensors) on a synthetic task with a known answer:",
      "pservers in this process (standalone, or registered in etcd with --etcd), trainers as",
      "threads. Prints progress, then the accuracy against the teacher network and the",
      "throughput, and writes the loss curve (SVG).",
      "Exit codes: 0 done, 1 a trainer failed, 2 bad usage, 3 done but below the accuracy bar."
    })
final class DemoCommand implements Callable<Integer> {
  /** Exit code of a run that worked but did not reach the accuracy bar (1 is a failure, 2 bad usage). */
  static final int BELOW_BAR = 3;

  @Option(names = "--pservers", defaultValue = "2", description = "pservers to start in this process (default ${DEFAULT-VALUE}); 0 with --etcd: trainers only, using the pservers registered there.")
  int pservers;

  @Option(names = "--trainers", defaultValue = "4", description = "trainer threads (default ${DEFAULT-VALUE}).")
  int trainers;

  @Option(names = "--duration", defaultValue = "40s", converter = GoDuration.class, description = "how long to train (default ${DEFAULT-VALUE}).")
  Duration duration;

  @Option(names = "--batch", defaultValue = "32", description = "samples per gradient (default ${DEFAULT-VALUE}).")
  int batch;

  @Option(names = "--seed", defaultValue = "7", description = "seed of the task and the initial weights (default ${DEFAULT-VALUE}).")
  long seed;

  @Option(names = "--out", defaultValue = "target/demo", description = "where the loss curve and the pservers' checkpoints go (default ${DEFAULT-VALUE}).")
  Path out;

  @Option(names = "--pserver", description = "use running pservers at these addresses instead of starting them (repeat, in index order).")
  List<String> addresses = List.of();

  @Option(names = "--etcd", description = {"run through etcd at these endpoints: the pservers register there and the trainers find them and elect their initializer there.",
      "With pservers of its own (--pservers > 0) the demo owns the job: it first deletes /ps_desired, /checkpoints/* and /init_ps/done there."})
  String etcd;

  @Override
  public Integer call() throws Exception {
    if (trainers < 1 || batch < 1 || pservers < 0) {
      throw new IllegalArgumentException("--trainers and --batch must be >= 1, --pservers >= 0");
    }
    if (pservers == 0 && (etcd == null || etcd.isBlank()) && addresses.isEmpty()) {
      throw new IllegalArgumentException("--pservers 0 (trainers only) needs --etcd or --pserver addresses");
    }
    PrintStream o = System.out;
    Demo.Options opts = new Demo.Options(addresses.isEmpty() ? pservers : addresses.size(), trainers, duration, batch, seed, out, List.copyOf(addresses), etcd);
    Demo.Result r = Demo.run(opts, o);
    o.println(Demo.summary(r));
    if (!r.failures().isEmpty()) {
      o.println("trainer failures: " + r.failures());
      return 1;
    }
    return r.accuracy() >= Demo.ACCURACY_BAR ? 0 : BELOW_BAR;
  }
}
