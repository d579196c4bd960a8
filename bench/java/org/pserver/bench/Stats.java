package org.pserver.bench;

import java.util.Arrays;
import java.util.Locale;

/** Medians and ranges of repeated measurements, and the number formats the reports share. */
final class Stats {
  private Stats() {}

  static double median(double[] xs) {
    double[] s = finite(xs);
    if (s.length == 0) {
      return Double.NaN;
    }
    Arrays.sort(s);
    int n = s.length;
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }

  static double min(double[] xs) {
    return Arrays.stream(finite(xs)).min().orElse(Double.NaN);
  }

  static double max(double[] xs) {
    return Arrays.stream(finite(xs)).max().orElse(Double.NaN);
  }

  /** Element-wise a[i] / b[i]: ratios of measurements taken side by side in the same round. */
  static double[] ratios(double[] a, double[] b) {
    double[] r = new double[Math.min(a.length, b.length)];
    for (int i = 0; i < r.length; i++) {
      r[i] = a[i] / b[i];
    }
    return r;
  }

  /** The p-quantile (0..1) of {@code xs}, nearest rank. */
  static double quantile(double[] xs, double p) {
    double[] s = finite(xs);
    if (s.length == 0) {
      return Double.NaN;
    }
    Arrays.sort(s);
    int i = (int) Math.ceil(p * s.length) - 1;
    return s[Math.max(0, Math.min(s.length - 1, i))];
  }

  private static double[] finite(double[] xs) {
    return Arrays.stream(xs).filter(x -> !Double.isNaN(x) && !Double.isInfinite(x)).toArray();
  }

  static String f(double x, int digits) {
    return Double.isNaN(x) ? "-" : String.format(Locale.ROOT, "%." + digits + "f", x);
  }

  /** "median [min-max]" of a ratio series. */
  static String range(double[] xs, int digits) {
    return f(median(xs), digits) + " [" + f(min(xs), digits) + "-" + f(max(xs), digits) + "]";
  }

  /** 4 KiB, 1 MiB, 64 MiB; 64 K, 1 M elements (binary multiples). */
  static String size(long n, String unit) {
    if (n >= 1 << 20 && n % (1 << 20) == 0) {
      return (n >> 20) + " Mi" + unit;
    }
    if (n >= 1 << 10 && n % (1 << 10) == 0) {
      return (n >> 10) + " Ki" + unit;
    }
    return n + " " + unit;
  }
}
