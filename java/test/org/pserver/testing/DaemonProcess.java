package org.pserver.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A real pserver daemon ({@code pserver serve}) in its own JVM, for crash and signal tests: start
 * it, wait for its start-up line, kill it with SIGKILL or stop it with SIGTERM. Its output goes
 * to a log file that failures quote. Processes still running when the test JVM exits are killed.
 */
public final class DaemonProcess implements AutoCloseable {
  private static final List<Process> LIVE = new ArrayList<>();

  static {
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      synchronized (LIVE) {
        LIVE.forEach(Process::destroyForcibly);
      }
    }));
  }

  private final Process process;
  private final Path log;
  private final int port;

  private DaemonProcess(Process process, Path log, int port) {
    this.process = process;
    this.log = log;
    this.port = port;
  }

  /** A currently free TCP port on loopback. */
  public static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /**
   * Starts {@code pserver serve --port <free> <args>} with extra JVM flags and waits for its
   * "listening on" line; fails, quoting the log, if it exits first.
   */
  public static DaemonProcess serve(Path logDir, List<String> jvmFlags, String... args) throws IOException, InterruptedException {
    return serveOn(freePort(), logDir, jvmFlags, args);
  }

  /** As {@link #serve}, on a given port (to restart a pserver where its trainers expect it). */
  public static DaemonProcess serveOn(int port, Path logDir, List<String> jvmFlags, String... args) throws IOException, InterruptedException {
    DaemonProcess d = launch(port, logDir, java.util.Map.of(), jvmFlags, args);
    if (!d.awaitLog("listening on", Duration.ofSeconds(60))) {
      throw new AssertionError("pserver exited with " + d.process.exitValue() + " before listening; log:\n" + d.log());
    }
    return d;
  }

  /** Starts {@code pserver serve --port <free> <args>} without waiting for anything. */
  public static DaemonProcess launch(Path logDir, List<String> jvmFlags, String... args) throws IOException {
    return launch(logDir, java.util.Map.of(), jvmFlags, args);
  }

  /** As {@link #launch(Path, List, String...)}, with extra environment variables. */
  public static DaemonProcess launch(Path logDir, java.util.Map<String, String> env, List<String> jvmFlags, String... args) throws IOException {
    return launch(freePort(), logDir, env, jvmFlags, args);
  }

  private static DaemonProcess launch(int port, Path logDir, java.util.Map<String, String> env, List<String> jvmFlags, String... args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("-Xmx512m");
    cmd.add("-XX:+UseSerialGC");
    cmd.add("-XX:TieredStopAtLevel=1");
    String cache = System.getProperty("org.bytedeco.javacpp.cachedir");
    if (cache != null) {
      cmd.add("-Dorg.bytedeco.javacpp.cachedir=" + cache);
    }
    cmd.addAll(jvmFlags);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add("org.pserver.cli.Main");
    cmd.add("serve");
    cmd.add("--port");
    cmd.add(Integer.toString(port));
    cmd.addAll(List.of(args));
    Files.createDirectories(logDir);
    Path log = Files.createTempFile(logDir, "pserver-", ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().putAll(env);
    Process p = pb.start();
    synchronized (LIVE) {
      LIVE.add(p);
    }
    return new DaemonProcess(p, log, port);
  }

  public int port() {
    return port;
  }

  public String target() {
    return "127.0.0.1:" + port;
  }

  public Process process() {
    return process;
  }

  /** The daemon's output so far. */
  public String log() {
    try {
      return Files.readString(log, StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "(cannot read " + log + ": " + e + ")";
    }
  }

  /** Waits until the output contains {@code text}; returns early (false) if the process exits. */
  public boolean awaitLog(String text, Duration timeout) throws InterruptedException {
    long until = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < until) {
      if (log().contains(text)) {
        return true;
      }
      if (!process.isAlive()) {
        return log().contains(text);
      }
      Thread.sleep(25);
    }
    throw new AssertionError("no '" + text + "' within " + timeout + "; log:\n" + log());
  }

  /** SIGKILL, and wait for the process to be gone. */
  public void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor(30, TimeUnit.SECONDS);
  }

  /** SIGTERM, and wait for the exit code. */
  public int terminate(Duration timeout) throws InterruptedException {
    process.destroy();
    if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      throw new AssertionError("still running " + timeout + " after SIGTERM; log:\n" + log());
    }
    return process.exitValue();
  }

  /** Waits for the process to exit on its own and returns the exit code. */
  public int awaitExit(Duration timeout) throws InterruptedException {
    if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      throw new AssertionError("did not exit within " + timeout + "; log:\n" + log());
    }
    return process.exitValue();
  }

  @Override
  public void close() {
    if (process.isAlive()) {
      process.destroyForcibly();
      try {
        process.waitFor(30, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    synchronized (LIVE) {
      LIVE.remove(process);
    }
  }
}
