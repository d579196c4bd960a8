package org.pserver.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import org.pserver.ElementType;

/**
 * Turns the JSON of a {@code KernelBench}/{@code CallBench} run into {@code kernels.md} (tables,
 * and the targets checked against this run's numbers) and {@code kernels.svg} (throughput
 * against size, native solid and Java dashed, the triad grey). Every figure comes from the JSON.
 *
 * <p>Usage: {@code KernelReport <jmh.json> <out-dir> <header line>}
 */
public final class KernelReport {
  private static final String[] KERNELS = {"sgd", "momentum", "adam", "adagrad", "adadelta"};
  private static final String[] TYPES = {"FLOAT32", "FLOAT64", "INT32"};
  private static final String[] COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"};

  /** Microseconds per call, keyed by impl/kernel/type/size (triad: "native/triad/FLOAT32/n"). */
  private final Map<String, Double> us = new LinkedHashMap<>();

  private final Map<String, Double> errUs = new LinkedHashMap<>();
  private final TreeSet<Integer> sizes = new TreeSet<>();
  private double emptyNs = Double.NaN;
  private double adamOneNs = Double.NaN;

  public static void main(String[] args) throws IOException {
    if (args.length < 3) {
      throw new IllegalArgumentException("usage: KernelReport <jmh.json> <out-dir> <header>");
    }
    KernelReport r = new KernelReport();
    r.read(Path.of(args[0]));
    Path out = Path.of(args[1]);
    Files.createDirectories(out);
    Files.writeString(out.resolve("kernels.md"), r.markdown(args[2]));
    Files.writeString(out.resolve("kernels.svg"), r.svg());
  }

  private static String key(String impl, String kernel, String type, int size) {
    return impl + "/" + kernel + "/" + type + "/" + size;
  }

  void read(Path json) throws IOException {
    JsonArray runs = JsonParser.parseString(Files.readString(json)).getAsJsonArray();
    for (JsonElement e : runs) {
      JsonObject o = e.getAsJsonObject();
      String bench = o.get("benchmark").getAsString();
      JsonObject metric = o.getAsJsonObject("primaryMetric");
      double score = metric.get("score").getAsDouble();
      double err = metric.get("scoreError").isJsonPrimitive() ? metric.get("scoreError").getAsDouble() : Double.NaN;
      JsonObject params = o.has("params") ? o.getAsJsonObject("params") : new JsonObject();
      if (bench.endsWith(".update")) {
        int size = params.get("size").getAsInt();
        sizes.add(size);
        String k = key(params.get("impl").getAsString(), params.get("kernel").getAsString(), params.get("type").getAsString(), size);
        us.put(k, score);
        errUs.put(k, err);
      } else if (bench.endsWith(".triad")) {
        int size = params.get("size").getAsInt();
        sizes.add(size);
        us.put(key("native", "triad", "FLOAT32", size), score);
        errUs.put(key("native", "triad", "FLOAT32", size), err);
      } else if (bench.endsWith(".emptyCall")) {
        emptyNs = score;
      } else if (bench.endsWith(".adamOneElement")) {
        adamOneNs = score;
      }
    }
  }

  /** GB/s of one update, or NaN if it was not measured. */
  double gbps(String impl, String kernel, String type, int size) {
    Double t = us.get(key(impl, kernel, type, size));
    if (t == null) {
      return Double.NaN;
    }
    return (double) KernelBench.bytes(kernel, ElementType.valueOf(type)) * size / (t * 1e3);
  }

  double triad(int size) {
    return gbps("native", "triad", "FLOAT32", size);
  }

  static String f(double x, int digits) {
    return Double.isNaN(x) ? "-" : String.format(Locale.ROOT, "%." + digits + "f", x);
  }

  static String label(int size) {
    if (size >= 1 << 20 && size % (1 << 20) == 0) {
      return (size >> 20) + " M";
    }
    if (size >= 1 << 10 && size % (1 << 10) == 0) {
      return (size >> 10) + " K";
    }
    return Integer.toString(size);
  }

  String markdown(String header) {
    StringBuilder md = new StringBuilder();
    md.append(header).append("\n\n");
    md.append("Single thread. GB/s counts the bytes each update must move (reads plus writes: ")
        .append("SGD 3e, momentum and Adagrad 3e+2s, Adam 3e+4s, Adadelta 3e+5s, with e the element ")
        .append("and s the state size; triad 12 B). `/triad` divides by the native in-place triad ")
        .append("`a[i] += s*b[i]` at the same size in the same run.\n\n");
    md.append("| size | triad GB/s |\n|---:|---:|\n");
    for (int n : sizes) {
      md.append("| ").append(label(n)).append(" | ").append(f(triad(n), 1)).append(" |\n");
    }
    md.append('\n');
    md.append("| kernel | type | size | native GB/s | java GB/s | native Melem/s | native/triad | java/triad | native/java |\n");
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (String type : TYPES) {
      for (String kernel : KERNELS) {
        for (int n : sizes) {
          double nat = gbps("native", kernel, type, n), jav = gbps("java", kernel, type, n);
          if (Double.isNaN(nat) && Double.isNaN(jav)) {
            continue;
          }
          double melem = nat * 1e3 / KernelBench.bytes(kernel, ElementType.valueOf(type));
          md.append("| ").append(kernel).append(" | ").append(type.toLowerCase(Locale.ROOT)).append(" | ")
              .append(label(n)).append(" | ").append(f(nat, 1)).append(" | ").append(f(jav, 1)).append(" | ")
              .append(f(melem, 0)).append(" | ").append(f(nat / triad(n), 2)).append(" | ")
              .append(f(jav / triad(n), 2)).append(" | ").append(f(nat / jav, 2)).append(" |\n");
        }
      }
    }
    md.append("\nCall cost through the binding: empty JNI call ").append(f(emptyNs, 1))
        .append(" ns; Adam on one float through `NativeKernels` (checks, four address look-ups, JNI, dispatch) ")
        .append(f(adamOneNs, 1)).append(" ns; difference ").append(f(adamOneNs - emptyNs, 1)).append(" ns.\n");
    md.append("\n").append(targets());
    return md.toString();
  }

  /** The targets, each checked against this run. */
  String targets() {
    List<String> rows = new ArrayList<>();
    int big = sizes.isEmpty() ? 0 : sizes.last();
    int l2 = sizes.contains(65536) ? 65536 : 0;
    double a16 = gbps("native", "adam", "FLOAT32", big) / triad(big);
    rows.add(row("native Adam f32 at " + label(big) + " / triad", a16, ">= 0.90", a16 >= 0.9));
    double a64 = gbps("native", "adam", "FLOAT32", l2) / triad(l2);
    rows.add(row("native Adam f32 at 64 K / triad", a64, ">= 0.55", a64 >= 0.55));
    double call = adamOneNs - emptyNs;
    rows.add(row("binding cost above an empty call (ns)", call, "<= 100", call <= 100));
    double jn = gbps("java", "adam", "FLOAT32", big) / gbps("native", "adam", "FLOAT32", big);
    rows.add(row("java / native, Adam f32 at " + label(big), jn, ">= 0.50", jn >= 0.5));
    StringBuilder slower = new StringBuilder();
    double worst = Double.POSITIVE_INFINITY;
    for (String type : TYPES) {
      for (String kernel : KERNELS) {
        for (int n : sizes) {
          double r = gbps("native", kernel, type, n) / gbps("java", kernel, type, n);
          if (n >= 1024 && !Double.isNaN(r)) {
            worst = Math.min(worst, r);
            if (r < 1) {
              slower.append(slower.length() == 0 ? "" : ", ").append(kernel).append(' ').append(type.toLowerCase(Locale.ROOT)).append(' ').append(label(n));
            }
          }
        }
      }
    }
    rows.add(row("min native/java over sizes >= 1 K" + (slower.length() == 0 ? "" : " (slower: " + slower + ")"), worst, ">= 1.00", worst >= 1));
    return "| target | this run | goal | met |\n|---|---:|---:|:---:|\n" + String.join("", rows);
  }

  private static String row(String what, double value, String goal, boolean met) {
    return "| " + what + " | " + f(value, 3) + " | " + goal + " | " + (Double.isNaN(value) ? "?" : met ? "yes" : "**no**") + " |\n";
  }

  String svg() {
    int panelW = 360, panelH = 300, left = 55, top = 40, plotW = 270, plotH = 210;
    int width = panelW * TYPES.length + 20, height = panelH + 80;
    double maxGbps = 1;
    for (Map.Entry<String, Double> e : us.entrySet()) {
      String[] k = e.getKey().split("/");
      maxGbps = Math.max(maxGbps, gbps(k[0], k[1], k[2], Integer.parseInt(k[3])));
    }
    double yMax = Math.ceil(maxGbps / 20) * 20;
    List<Integer> xs = new ArrayList<>(sizes);
    StringBuilder s = new StringBuilder();
    s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">%n", width, height));
    s.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    s.append("<text x=\"10\" y=\"18\" font-size=\"14\">Update kernels, single thread: GB/s moved vs elements (native solid, Java dashed, triad grey)</text>\n");
    for (int pi = 0; pi < TYPES.length; pi++) {
      int ox = 10 + pi * panelW + left, oy = top;
      String type = TYPES[pi];
      s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" font-size=\"13\">%s</text>%n", ox + plotW / 2 - 25, oy - 8, type.toLowerCase(Locale.ROOT)));
      s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>%n", ox, oy, plotW, plotH));
      for (int t = 0; t <= 4; t++) {
        double v = yMax * t / 4;
        int y = oy + plotH - (int) Math.round(plotH * v / yMax);
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f</text>%n", ox, y, ox + plotW, y, ox - 4, y + 4, v));
      }
      for (int i = 0; i < xs.size(); i++) {
        int x = xpos(i, xs.size(), ox, plotW);
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>%n", x, oy + plotH + 15, label(xs.get(i))));
      }
      line(s, xs, ox, oy, plotW, plotH, yMax, n -> triad(n), "#999", "2,3", 2);
      for (int ki = 0; ki < KERNELS.length; ki++) {
        String kernel = KERNELS[ki];
        line(s, xs, ox, oy, plotW, plotH, yMax, n -> gbps("native", kernel, type, n), COLORS[ki], null, 2);
        line(s, xs, ox, oy, plotW, plotH, yMax, n -> gbps("java", kernel, type, n), COLORS[ki], "6,4", 1.5);
      }
      if (pi == 0) {
        s.append(String.format(Locale.ROOT, "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">GB/s</text>%n", ox - 38, oy + plotH / 2));
      }
    }
    int ly = top + plotH + 40, lx = 20;
    for (int ki = 0; ki < KERNELS.length; ki++) {
      s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">%s</text>%n", lx, ly, lx + 25, ly, COLORS[ki], lx + 30, ly + 4, KERNELS[ki]));
      lx += 110;
    }
    s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-width=\"2\" stroke-dasharray=\"2,3\"/><text x=\"%d\" y=\"%d\">triad (native)</text>%n", lx, ly, lx + 25, ly, lx + 30, ly + 4));
    s.append("</svg>\n");
    return s.toString();
  }

  private static int xpos(int i, int count, int ox, int plotW) {
    return count <= 1 ? ox + plotW / 2 : ox + 20 + (plotW - 40) * i / (count - 1);
  }

  private void line(StringBuilder s, List<Integer> xs, int ox, int oy, int plotW, int plotH, double yMax,
      java.util.function.IntToDoubleFunction value, String color, String dash, double width) {
    StringBuilder pts = new StringBuilder();
    for (int i = 0; i < xs.size(); i++) {
      double v = value.applyAsDouble(xs.get(i));
      if (Double.isNaN(v)) {
        continue;
      }
      int x = xpos(i, xs.size(), ox, plotW);
      int y = oy + plotH - (int) Math.round(plotH * Math.min(v, yMax) / yMax);
      pts.append(x).append(',').append(y).append(' ');
    }
    if (pts.length() > 0) {
      s.append(String.format(Locale.ROOT, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\"%s points=\"%s\"/>%n",
          color, width, dash == null ? "" : " stroke-dasharray=\"" + dash + "\"", pts.toString().trim()));
    }
  }
}
