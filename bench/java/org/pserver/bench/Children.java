package org.pserver.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.ToDoubleFunction;

/**
 * What the benchmarks that start server processes share: waiting for a child's {@code READY} line
 * while its output goes to a log file, and reading samples back from a saved run.
 */
final class Children {
  private Children() {}

  /**
   * Copies {@code child}'s output to {@code log} until a line starting with {@code "READY "}, then
   * keeps copying the rest on a daemon thread.
   *
   * @return the READY line without its {@code "READY "} prefix
   * @throws IOException if the child's output ends first (it exited), naming the log
   */
  static String awaitReady(Process child, Path log) throws IOException {
    BufferedReader in = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
    PrintWriter file = new PrintWriter(Files.newBufferedWriter(log, StandardCharsets.UTF_8), true);
    String line;
    while ((line = in.readLine()) != null) {
      file.println(line);
      if (line.startsWith("READY ")) {
        Thread drain = new Thread(() -> {
          try {
            String l;
            while ((l = in.readLine()) != null) {
              file.println(l);
            }
          } catch (IOException e) {
            // the child is gone
          }
        }, "child-log");
        drain.setDaemon(true);
        drain.start();
        return line.substring("READY ".length());
      }
    }
    file.close();
    throw new IOException("a server process exited before it was ready; see " + log);
  }

  /** {@code f} of every sample in {@code samples} (JSON objects), in order. */
  static double[] each(JsonArray samples, ToDoubleFunction<JsonObject> f) {
    double[] v = new double[samples.size()];
    for (int i = 0; i < v.length; i++) {
      v[i] = f.applyAsDouble(samples.get(i).getAsJsonObject());
    }
    return v;
  }

  /** Payload MB/s (10^6 bytes) of a sample with {@code bytes} and {@code seconds}. */
  static double mbps(JsonObject sample) {
    return sample.get("bytes").getAsDouble() / sample.get("seconds").getAsDouble() / 1e6;
  }
}
