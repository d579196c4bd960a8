package org.pserver.bench;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.pserver.ElementType;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.OffHeap;
import org.pserver.kernels.ParallelKernels;
import org.pserver.kernels.UpdateKernels;

/**
 * Where splitting one update across two threads starts to pay: the native kernels on one thread
 * against {@link ParallelKernels} with two threads (always split) and with the default threshold
 * ("auto"), at sizes from 64 K to 64 M elements, on the same buffers.
 *
 * <p>Not JMH: JMH measures each parameter combination as its own block, one after the other, while
 * on a shared noisy VM the comparison is only trustworthy when the variants alternate. So each
 * round measures every variant once, in a rotating order, for at least {@code ms} milliseconds, and
 * the report gives per-round ratios as median [min-max].
 *
 * <p>Usage: {@code ParallelCrossover <out-dir> <header> <rounds> <ms-per-measurement> [sizes...]}
 */
public final class ParallelCrossover {
  private static final String[] KERNELS = {"adam", "sgd"};
  private static final String[] VARIANTS = {"1 thread", "2 threads", "auto"};

  public static void main(String[] args) throws IOException {
    Path out = Path.of(args[0]);
    String header = args[1];
    int rounds = Integer.parseInt(args[2]);
    int ms = Integer.parseInt(args[3]);
    List<Integer> sizes = new ArrayList<>();
    for (int i = 4; i < args.length; i++) {
      sizes.add(Integer.parseInt(args[i]));
    }
    if (sizes.isEmpty()) {
      sizes = List.of(1 << 16, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22, 1 << 24, 1 << 26);
    }
    UpdateKernels one = Kernels.nativeOrThrow();
    ParallelKernels two = new ParallelKernels(one, 2, 1);
    ParallelKernels auto = new ParallelKernels(one, 2, ParallelKernels.DEFAULT_MIN_ELEMENTS);
    UpdateKernels[] impls = {one, two, auto};

    // GB/s per kernel, size, variant: one value per round.
    Map<String, double[]> gbps = new LinkedHashMap<>();
    for (String kernel : KERNELS) {
      for (int n : sizes) {
        ByteBuffer[] b = buffers(n);
        for (UpdateKernels k : impls) { // warm-up: JIT of the split path, pages touched
          time(k, kernel, b, n, Math.max(100, ms));
        }
        double[][] v = new double[impls.length][rounds];
        for (int r = 0; r < rounds; r++) {
          for (int j = 0; j < impls.length; j++) {
            int i = (j + r) % impls.length;
            double secondsPerCall = time(impls[i], kernel, b, n, ms);
            v[i][r] = bytes(kernel) * (double) n / secondsPerCall / 1e9;
          }
        }
        for (int i = 0; i < impls.length; i++) {
          gbps.put(kernel + "/" + n + "/" + VARIANTS[i], v[i]);
        }
        System.err.printf("[parallel] %s %d: 1 thr %s GB/s, 2 thr %s, 2/1 %s%n", kernel, n,
            Stats.f(Stats.median(v[0]), 1), Stats.f(Stats.median(v[1]), 1),
            Stats.range(Stats.ratios(v[1], v[0]), 2));
      }
    }
    two.shutdown();
    auto.shutdown();

    Files.createDirectories(out);
    JsonObject json = new JsonObject();
    json.addProperty("header", header);
    json.addProperty("defaultMinElements", ParallelKernels.DEFAULT_MIN_ELEMENTS);
    JsonObject series = new JsonObject();
    gbps.forEach((k, v) -> {
      JsonArray a = new JsonArray();
      for (double x : v) {
        a.add(x);
      }
      series.add(k, a);
    });
    json.add("gbps", series);
    Files.writeString(out.resolve("parallel.json"), new GsonBuilder().setPrettyPrinting().create().toJson(json));
    String md = markdown(header, sizes, gbps);
    Files.writeString(out.resolve("parallel.md"), md);
    System.out.print(md);
  }

  static String markdown(String header, List<Integer> sizes, Map<String, double[]> gbps) {
    StringBuilder md = new StringBuilder(header).append("\n\n");
    md.append("Native kernels, float32, one update per call over the whole parameter. GB/s counts the ")
        .append("bytes each update must move (Adam 28 B/element, SGD 12 B/element). `2/1` and `auto/1` ")
        .append("are per-round ratios, median [min-max]; the variants alternate within each round. ")
        .append("`auto` is `ParallelKernels` with its default threshold of ")
        .append(Stats.size(ParallelKernels.DEFAULT_MIN_ELEMENTS, "elements")).append(".\n\n");
    for (String kernel : KERNELS) {
      md.append("| ").append(kernel).append(" elements | 1 thread GB/s | 2 threads GB/s | 2/1 | auto/1 |\n");
      md.append("|---:|---:|---:|---:|---:|\n");
      for (int n : sizes) {
        double[] a = gbps.get(kernel + "/" + n + "/1 thread");
        double[] b = gbps.get(kernel + "/" + n + "/2 threads");
        double[] c = gbps.get(kernel + "/" + n + "/auto");
        md.append("| ").append(Stats.size(n, "")).append(" | ").append(Stats.f(Stats.median(a), 1))
            .append(" | ").append(Stats.f(Stats.median(b), 1)).append(" | ")
            .append(Stats.range(Stats.ratios(b, a), 2)).append(" | ")
            .append(Stats.range(Stats.ratios(c, a), 2)).append(" |\n");
      }
      md.append('\n');
    }
    return md.toString();
  }

  static int bytes(String kernel) {
    return kernel.equals("adam") ? 28 : 12;
  }

  /** Seconds per call: as many calls as fit in {@code ms} (at least 3). */
  static double time(UpdateKernels k, String kernel, ByteBuffer[] b, int n, int ms) {
    long budget = ms * 1_000_000L;
    long t0 = System.nanoTime();
    long calls = 0;
    long now;
    do {
      call(k, kernel, b, n);
      calls++;
      now = System.nanoTime();
    } while (now - t0 < budget || calls < 3);
    return (now - t0) / 1e9 / calls;
  }

  static void call(UpdateKernels k, String kernel, ByteBuffer[] b, int n) {
    if (kernel.equals("adam")) {
      k.adam(ElementType.FLOAT32, b[0], b[1], b[2], b[3], 0, n, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 0);
    } else {
      k.sgd(ElementType.FLOAT32, b[0], b[1], null, 0, n, 1e-3, 0, 0, false, 1, 0);
    }
  }

  static ByteBuffer[] buffers(int n) {
    SplittableRandom rnd = new SplittableRandom(n);
    ByteBuffer[] b = new ByteBuffer[4];
    for (int k = 0; k < 4; k++) {
      b[k] = OffHeap.allocate(4 * n);
      for (int i = 0; i < n; i++) {
        b[k].putFloat(4 * i, k == 1 ? (float) (rnd.nextDouble() - 0.5) * 0.01f : 0.5f);
      }
    }
    return b;
  }
}
