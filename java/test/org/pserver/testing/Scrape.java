package org.pserver.testing;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One scrape of a Prometheus text-format endpoint, as series ("name{label="value",...}", exactly
 * as exposed) to values. Comment lines are skipped.
 */
public final class Scrape {
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private final String text;
  private final Map<String, Double> series;

  private Scrape(String text, Map<String, Double> series) {
    this.text = text;
    this.series = series;
  }

  /** Scrapes {@code http://127.0.0.1:<port>/metrics}; fails unless the answer is 200. */
  public static Scrape of(int port) throws IOException, InterruptedException {
    HttpResponse<String> r = HTTP.send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
        HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 200) {
      throw new AssertionError("GET /metrics: HTTP " + r.statusCode() + "\n" + r.body());
    }
    Map<String, Double> m = new LinkedHashMap<>();
    for (String line : r.body().split("\n")) {
      if (line.isBlank() || line.startsWith("#")) {
        continue;
      }
      int sp = line.lastIndexOf(' ');
      m.put(line.substring(0, sp), Double.parseDouble(line.substring(sp + 1)));
    }
    return new Scrape(r.body(), m);
  }

  /** The value of {@code series}; fails, quoting the scrape, when it is absent. */
  public double value(String series) {
    Double v = this.series.get(series);
    if (v == null) {
      throw new AssertionError("no series " + series + " in:\n" + text);
    }
    return v;
  }

  /** The value of {@code series}, or 0 when it is absent. */
  public double valueOrZero(String series) {
    return this.series.getOrDefault(series, 0.0);
  }

  public boolean has(String series) {
    return this.series.containsKey(series);
  }

  /** Whether any series' name (the part before '{') is {@code name}. */
  public boolean hasMetric(String name) {
    return series.keySet().stream().anyMatch(s -> s.equals(name) || s.startsWith(name + "{"));
  }

  public String text() {
    return text;
  }
}
