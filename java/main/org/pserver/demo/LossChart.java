package org.pserver.demo;

import java.util.List;
import java.util.Locale;

/** The demo's loss curve as a small SVG: mean batch loss against updates applied. */
final class LossChart {
  private LossChart() {}

  static String svg(List<DemoStats.Point> curve, double accuracy) {
    int w = 640, h = 360, left = 60, top = 40, pw = 550, ph = 260;
    StringBuilder s = new StringBuilder();
    s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">%n", w, h));
    s.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"22\" font-size=\"14\">pserver demo: training loss (final accuracy %.3f vs the teacher)</text>%n", left, accuracy));
    s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>%n", left, top, pw, ph));
    if (curve.isEmpty()) {
      return s.append("</svg>\n").toString();
    }
    long maxU = curve.get(curve.size() - 1).updates();
    double maxL = 0;
    for (DemoStats.Point p : curve) {
      maxL = Math.max(maxL, p.loss());
    }
    maxL = Math.ceil(maxL * 2) / 2;
    for (int t = 0; t <= 4; t++) {
      double v = maxL * t / 4;
      int y = top + ph - (int) Math.round(ph * v / maxL);
      s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.2f</text>%n", left, y, left + pw, y, left - 5, y + 4, v));
      long u = maxU * t / 4;
      int x = left + (int) Math.round(pw * (double) u / maxU);
      s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>%n", x, top + ph + 16, u));
    }
    StringBuilder pts = new StringBuilder();
    for (DemoStats.Point p : curve) {
      int x = left + (int) Math.round(pw * (double) p.updates() / maxU);
      int y = top + ph - (int) Math.round(ph * Math.min(p.loss(), maxL) / maxL);
      pts.append(x).append(',').append(y).append(' ');
    }
    s.append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"").append(pts.toString().trim()).append("\"/>\n");
    s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">updates applied</text>%n", left + pw / 2, h - 12));
    s.append(String.format(Locale.ROOT, "<text transform=\"translate(16,%d) rotate(-90)\" text-anchor=\"middle\">cross-entropy loss</text>%n", top + ph / 2));
    return s.append("</svg>\n").toString();
  }
}
