package org.pserver.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * Turns the JSON of a {@link TransportBench} run into {@code transport.md} (tables, and the
 * issue's targets checked against this run) and {@code transport.svg} (throughput per variant,
 * payload size and trainer count). Every figure comes from the JSON: medians over rounds, and
 * ratios as medians of per-round ratios (the variants of a round ran back to back).
 *
 * <p>Usage (to re-render a saved run): {@code TransportReport <transport.json> <out-dir>}
 */
public final class TransportReport {
  private static final String[] COLORS = {"#7f7f7f", "#1f77b4", "#d62728", "#ff9896", "#2ca02c", "#17becf", "#98df8a"};
  private static final int MIB = 1 << 20;

  private final JsonObject run;

  TransportReport(JsonObject run) {
    this.run = run;
  }

  public static void main(String[] args) throws IOException {
    JsonObject run = JsonParser.parseString(Files.readString(Path.of(args[0]))).getAsJsonObject();
    TransportReport r = new TransportReport(run);
    Path out = Path.of(args[1]);
    Files.writeString(out.resolve("transport.md"), r.markdown());
    Files.writeString(out.resolve("transport.svg"), r.svg());
  }

  // ---------------------------------------------------------------------------------------------
  // Data

  /** One value per round of a variant in a cell, or null if it was not measured. */
  double[] series(int size, int trainers, String variant, ToDoubleFunction<JsonObject> f) {
    JsonObject cell = run.getAsJsonObject("throughput").getAsJsonObject(size + "/" + trainers);
    if (cell == null || !cell.has(variant)) {
      return null;
    }
    return Children.each(cell.getAsJsonArray(variant), f);
  }

  static double allocPerByte(JsonObject s) {
    return s.get("serverAllocated").getAsDouble() / s.get("bytes").getAsDouble();
  }

  static double cpuPerByte(JsonObject s) {
    return s.get("serverCpuNanos").getAsDouble() / s.get("bytes").getAsDouble();
  }

  double median(int size, int n, String v, ToDoubleFunction<JsonObject> f) {
    double[] s = series(size, n, v, f);
    return s == null ? Double.NaN : Stats.median(s);
  }

  /** Per-round ratios of variant a to variant b, by throughput. */
  double[] ratio(int size, int n, String a, String b) {
    double[] x = series(size, n, a, Children::mbps), y = series(size, n, b, Children::mbps);
    return x == null || y == null ? new double[0] : Stats.ratios(x, y);
  }

  /** [round][p50, p99] in ns. */
  double[][] latency(String variant) {
    JsonArray a = run.getAsJsonObject("latency").getAsJsonArray(variant);
    double[][] v = new double[a.size()][];
    for (int i = 0; i < v.length; i++) {
      JsonArray r = a.get(i).getAsJsonArray();
      v[i] = new double[] {r.get(0).getAsDouble(), r.get(1).getAsDouble()};
    }
    return v;
  }

  static double[] column(double[][] v, int c) {
    double[] out = new double[v.length];
    for (int i = 0; i < v.length; i++) {
      out[i] = v[i][c];
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Markdown

  String markdown() {
    StringBuilder md = new StringBuilder();
    md.append(run.get("header").getAsString()).append("\n\n");
    md.append("Loopback; one client JVM whose trainers are threads with a channel (a TCP connection) ")
        .append("each, and one server JVM (`TransportBenchServer`) holding pserver, a stock-marshaller ")
        .append("pserver, a raw gRPC service on a Netty server with pserver's settings, and a raw TCP sink. ")
        .append("Every call is a blocking unary call, back to back per trainer; raw TCP writes the same ")
        .append("bytes as the serialized request and waits for a one-byte acknowledgement. ")
        .append(run.get("rounds").getAsInt()).append(" rounds of at least ")
        .append(run.get("millisPerMeasurement").getAsInt()).append(" ms per variant; within a round the ")
        .append("variants run back to back in a rotating order, after one warm-up round. Figures are ")
        .append("medians over rounds; ratios are medians of per-round ratios, [min-max]. MB/s counts ")
        .append("payload bytes (the gradient or parameter; framing adds about 12 bytes per call). ")
        .append("Server kernels: ").append(run.get("kernels").getAsString()).append(". The machine is a ")
        .append("shared 2-core VM: client, server and other people's builds compete for the cores.\n\n");

    md.append("### Throughput, MB/s\n\n| payload | trainers |");
    for (String v : TransportBench.VARIANTS) {
      md.append(' ').append(v).append(" |");
    }
    md.append("\n|---:|---:|").append("---:|".repeat(TransportBench.VARIANTS.length)).append('\n');
    for (int size : TransportBench.SIZES) {
      for (int n : TransportBench.TRAINERS) {
        md.append("| ").append(Stats.size(size, "B")).append(" | ").append(n).append(" |");
        for (String v : TransportBench.VARIANTS) {
          md.append(' ').append(Stats.f(median(size, n, v, Children::mbps), 0)).append(" |");
        }
        md.append('\n');
      }
    }

    md.append("\n### Ratios, same rounds\n\n")
        .append("| payload | trainers | SendGrads / raw gRPC discard | raw gRPC discard / raw TCP | GetParams / raw gRPC source | SendGrads / stock SendGrads | GetParams / stock GetParams |\n")
        .append("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int size : TransportBench.SIZES) {
      for (int n : TransportBench.TRAINERS) {
        md.append("| ").append(Stats.size(size, "B")).append(" | ").append(n).append(" | ")
            .append(range(ratio(size, n, TransportBench.SEND, TransportBench.DISCARD))).append(" | ")
            .append(range(ratio(size, n, TransportBench.DISCARD, TransportBench.TCP))).append(" | ")
            .append(range(ratio(size, n, TransportBench.GET, TransportBench.SOURCE))).append(" | ")
            .append(range(ratio(size, n, TransportBench.SEND, TransportBench.SEND_STOCK))).append(" | ")
            .append(range(ratio(size, n, TransportBench.GET, TransportBench.GET_STOCK))).append(" |\n");
      }
    }

    md.append("\n### Server heap allocation per payload byte (median) and server CPU ns per payload byte\n\n")
        .append("Measured inside the server JVM: `ThreadMXBean.getThreadAllocatedBytes` and process CPU ")
        .append("time, summed over all its threads between the start and the end of each measurement.\n\n")
        .append("| payload | trainers |");
    List<String> serverSide = new ArrayList<>(List.of(TransportBench.VARIANTS).subList(1, TransportBench.VARIANTS.length));
    for (String v : serverSide) {
      md.append(' ').append(v).append(" B/B |");
    }
    for (String v : serverSide) {
      md.append(' ').append(v).append(" ns/B |");
    }
    md.append("\n|---:|---:|").append("---:|".repeat(2 * serverSide.size())).append('\n');
    for (int size : TransportBench.SIZES) {
      for (int n : TransportBench.TRAINERS) {
        md.append("| ").append(Stats.size(size, "B")).append(" | ").append(n).append(" |");
        for (String v : serverSide) {
          md.append(' ').append(Stats.f(median(size, n, v, TransportReport::allocPerByte), 4)).append(" |");
        }
        for (String v : serverSide) {
          md.append(' ').append(Stats.f(median(size, n, v, TransportReport::cpuPerByte), 2)).append(" |");
        }
        md.append('\n');
      }
    }

    double[][] send = latency(TransportBench.LAT_SEND), echo = latency(TransportBench.LAT_ECHO);
    md.append("\n### Latency, 1 KiB, one trainer, ").append(run.get("latencyCallsPerRound").getAsInt())
        .append(" sequential calls per round\n\n| call | p50 µs | p99 µs |\n|---|---:|---:|\n");
    md.append("| SendGrad, 1 KiB float32 gradient, Adam | ").append(Stats.f(Stats.median(column(send, 0)) / 1e3, 1))
        .append(" | ").append(Stats.f(Stats.median(column(send, 1)) / 1e3, 1)).append(" |\n");
    md.append("| raw gRPC unary echo, 1 KiB | ").append(Stats.f(Stats.median(column(echo, 0)) / 1e3, 1))
        .append(" | ").append(Stats.f(Stats.median(column(echo, 1)) / 1e3, 1)).append(" |\n");
    double[] p50 = Stats.ratios(column(send, 0), column(echo, 0));
    double[] p99 = Stats.ratios(column(send, 1), column(echo, 1));
    md.append("| SendGrad / echo | ").append(range(p50)).append(" | ").append(range(p99)).append(" |\n");

    md.append("\n### Targets (one trainer unless said)\n\n| target | this run | goal | met |\n|---|---:|---:|:---:|\n");
    double[] t1 = ratio(MIB, 1, TransportBench.SEND, TransportBench.DISCARD);
    md.append(row("SendGrads (Adam, 1 MiB) / raw gRPC discard (1 MiB)", Stats.median(t1), ">= 0.80", Stats.median(t1) >= 0.8));
    double[] t1b = ratio(MIB, 4, TransportBench.SEND, TransportBench.DISCARD);
    md.append(row("the same, 4 trainers", Stats.median(t1b), ">= 0.80", Stats.median(t1b) >= 0.8));
    double[] t2 = ratio(MIB, 1, TransportBench.DISCARD, TransportBench.TCP);
    md.append(row("raw gRPC discard / raw TCP at 1 MiB", Stats.median(t2), ">= 0.40", Stats.median(t2) >= 0.4));
    double a = median(MIB, 1, TransportBench.SEND, TransportReport::allocPerByte);
    md.append(row("server heap bytes allocated per payload byte, SendGrads 1 MiB", a, "<= 0.05", a <= 0.05));
    double a4 = median(MIB, 4, TransportBench.SEND, TransportReport::allocPerByte);
    md.append(row("the same, 4 trainers", a4, "<= 0.05", a4 <= 0.05));
    double g = median(MIB, 1, TransportBench.GET, TransportReport::allocPerByte);
    md.append(row("server heap bytes allocated per payload byte, GetParams 1 MiB", g, "<= 0.05", g <= 0.05));
    double[] t3 = ratio(MIB, 1, TransportBench.GET, TransportBench.SOURCE);
    md.append(row("GetParams / raw gRPC source at 1 MiB", Stats.median(t3), ">= 0.80", Stats.median(t3) >= 0.8));
    md.append(row("1 KiB SendGrad p50 / raw gRPC echo p50", Stats.median(p50), "<= 1.25", Stats.median(p50) <= 1.25));
    md.append(row("1 KiB SendGrad p99 / raw gRPC echo p99", Stats.median(p99), "<= 2.00", Stats.median(p99) <= 2));
    md.append("\n![transport](transport.svg)\n");
    return md.toString();
  }

  private static String range(double[] r) {
    return r.length == 0 ? "-" : Stats.range(r, 2);
  }

  private static String row(String what, double value, String goal, boolean met) {
    return "| " + what + " | " + Stats.f(value, value < 0.1 ? 4 : 2) + " | " + goal + " | "
        + (Double.isNaN(value) ? "?" : met ? "yes" : "**no**") + " |\n";
  }

  // ---------------------------------------------------------------------------------------------
  // Chart: one panel per trainer count; groups of bars per payload size; log MB/s.

  String svg() {
    int panelW = 520, plotH = 260, left = 60, top = 50, gap = 30;
    int[] sizes = TransportBench.SIZES;
    int width = 20 + TransportBench.TRAINERS.length * (panelW + gap), height = top + plotH + 110;
    double lo = 1, hi = 1e4; // MB/s, log scale
    for (int size : sizes) {
      for (int n : TransportBench.TRAINERS) {
        for (String v : TransportBench.VARIANTS) {
          double m = median(size, n, v, Children::mbps);
          if (!Double.isNaN(m)) {
            lo = Math.min(lo, m);
            hi = Math.max(hi, m);
          }
        }
      }
    }
    double yLo = Math.pow(10, Math.floor(Math.log10(lo))), yHi = Math.pow(10, Math.ceil(Math.log10(hi)));
    StringBuilder s = new StringBuilder();
    s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">%n", width, height));
    s.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    s.append("<text x=\"10\" y=\"20\" font-size=\"14\">Loopback throughput, MB/s of payload (log scale), median of rounds</text>\n");
    for (int pi = 0; pi < TransportBench.TRAINERS.length; pi++) {
      int n = TransportBench.TRAINERS[pi];
      int ox = 10 + pi * (panelW + gap) + left, plotW = panelW - left;
      s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" font-size=\"13\">%d trainer%s</text>%n", ox + plotW / 2 - 30, top - 10, n, n == 1 ? "" : "s"));
      s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>%n", ox, top, plotW, plotH));
      for (double v = yLo; v <= yHi * 1.0001; v *= 10) {
        int y = ypos(v, yLo, yHi, top, plotH);
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>%n",
            ox, y, ox + plotW, y, ox - 4, y + 4, v >= 1 ? String.format(Locale.ROOT, "%.0f", v) : String.valueOf(v)));
      }
      int groupW = plotW / sizes.length, barW = (groupW - 20) / TransportBench.VARIANTS.length;
      for (int si = 0; si < sizes.length; si++) {
        int gx = ox + si * groupW + 10;
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s per call</text>%n", gx + (groupW - 20) / 2, top + plotH + 15, Stats.size(sizes[si], "B")));
        for (int vi = 0; vi < TransportBench.VARIANTS.length; vi++) {
          double m = median(sizes[si], n, TransportBench.VARIANTS[vi], Children::mbps);
          if (Double.isNaN(m)) {
            continue;
          }
          int y = ypos(m, yLo, yHi, top, plotH);
          s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>%s: %.0f MB/s</title></rect>%n",
              gx + vi * barW, y, Math.max(1, barW - 2), top + plotH - y, COLORS[vi], TransportBench.VARIANTS[vi], m));
        }
      }
      if (pi == 0) {
        s.append(String.format(Locale.ROOT, "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">MB/s</text>%n", ox - 45, top + plotH / 2));
      }
    }
    int ly = top + plotH + 40, lx = 20;
    for (int vi = 0; vi < TransportBench.VARIANTS.length; vi++) {
      if (vi == 4) {
        ly += 20;
        lx = 20;
      }
      s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>%n",
          lx, ly - 9, COLORS[vi], lx + 18, ly, TransportBench.VARIANTS[vi]));
      lx += 230;
    }
    s.append("</svg>\n");
    return s.toString();
  }

  private static int ypos(double v, double lo, double hi, int top, int plotH) {
    double f = (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo));
    return top + plotH - (int) Math.round(plotH * f);
  }
}
