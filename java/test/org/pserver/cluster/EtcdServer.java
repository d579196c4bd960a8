package org.pserver.cluster;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * A real, single-member etcd server for tests: the {@code etcd} binary from {@code PATH}, on free
 * loopback ports, with its own data folder under {@code target/}. Tests in any package may use it
 * (directly, or through {@link EtcdServerExtension}).
 *
 * <pre>{@code
 * try (EtcdServer etcd = EtcdServer.launch()) {
 *   String endpoints = etcd.endpoint();          // "http://127.0.0.1:<port>"
 *   ...
 *   etcd.stop();  etcd.start();                   // an outage: same ports, same data
 *   String keys = etcd.etcdctl("get", "--prefix", "/");
 * }
 * }</pre>
 *
 * <p>Contract and traps:
 *
 * <ul>
 *   <li><b>No silent skip.</b> If {@code etcd} (or, for {@link #etcdctl}, {@code etcdctl}) is not
 *       on {@code PATH}, {@link #launch()} throws {@link IllegalStateException} saying how to
 *       install it. Tests that need etcd fail; they never pass without having run.
 *   <li><b>Every URL is explicit</b> (client, advertise, peer, initial cluster, metrics off), so the
 *       default ports 2379/2380 are never touched and a system etcd does not interfere. {@code
 *       ETCD_*} and {@code ETCDCTL_*} variables of the test environment are removed from the
 *       child's environment because etcd would read them.
 *   <li><b>Ports are chosen once.</b> {@link #stop()}/{@link #kill()} then {@link #start()}
 *       restarts on the same ports and the same data folder, so clients reconnect to the same
 *       endpoint and leases and keys survive (etcd extends every lease by its TTL when it elects
 *       a leader after a restart: a lease does not expire just because etcd was down).
 *   <li><b>Disk.</b> etcd preallocates 64 MB WAL files; {@link #close()} deletes the whole folder.
 *       The folder is {@code <pserver.test.tmp>/etcd-<name>-<n>} ({@code target/test-tmp} under
 *       Maven), with the data in {@code data/} and etcd's zap log in {@code etcd.log}; a failed
 *       start includes the log's tail in its message.
 *   <li><b>No leaked processes.</b> A JVM shutdown hook kills (SIGKILL) every server still running
 *       and deletes its folder, for tests that fail before their {@code close()}.
 *   <li>Not thread-safe for concurrent {@code start/stop} calls; {@link #etcdctl} and the getters
 *       may be called from any thread.
 * </ul>
 */
public final class EtcdServer implements AutoCloseable {
  private static final AtomicInteger COUNTER = new AtomicInteger();
  private static final Set<EtcdServer> LIVE = ConcurrentHashMap.newKeySet();
  private static final Duration START_TIMEOUT = Duration.ofSeconds(20);
  private static final Duration STOP_TIMEOUT = Duration.ofSeconds(10);

  static {
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  for (EtcdServer s : LIVE) {
                    s.destroyQuietly();
                  }
                },
                "etcd-test-server-cleanup"));
  }

  private final String name;
  private final Path etcdBinary;
  private final Path dir;
  private final Path dataDir;
  private final Path logFile;
  private final int clientPort;
  private final int peerPort;
  private final HttpClient http =
      HttpClient.newBuilder().connectTimeout(Duration.ofMillis(500)).build();
  private volatile Process process;
  private volatile boolean closed;

  private EtcdServer(String name, Path etcdBinary) throws IOException {
    this.name = name;
    this.etcdBinary = etcdBinary;
    Path base = Paths.get(System.getProperty("pserver.test.tmp", "target/test-tmp"));
    Files.createDirectories(base);
    this.dir = Files.createTempDirectory(base, "etcd-" + name + "-" + COUNTER.incrementAndGet() + "-");
    this.dataDir = dir.resolve("data");
    this.logFile = dir.resolve("etcd.log");
    int[] ports = freePorts(2);
    this.clientPort = ports[0];
    this.peerPort = ports[1];
  }

  /** Creates and starts a server named "test" with the {@code etcd} found on {@code PATH}. */
  public static EtcdServer launch() throws IOException {
    return launch("test");
  }

  /** Creates and starts a server; {@code name} only labels the data folder and the member. */
  public static EtcdServer launch(String name) throws IOException {
    EtcdServer s = create(name, findOnPath("etcd"));
    try {
      s.start();
    } catch (RuntimeException | IOException e) {
      s.close();
      throw e;
    }
    return s;
  }

  /**
   * Creates a server that is not started yet, with an explicit etcd binary. Package-visible tests
   * use it to check the "binary missing" message.
   */
  static EtcdServer create(String name, Path etcdBinary) throws IOException {
    if (!Files.isExecutable(etcdBinary)) {
      throw new IllegalStateException(missingBinaryMessage("etcd", etcdBinary.toString()));
    }
    return new EtcdServer(name, etcdBinary);
  }

  /** The client URL, e.g. {@code http://127.0.0.1:41234}: what to pass as etcd endpoints. */
  public String endpoint() {
    return "http://127.0.0.1:" + clientPort;
  }

  public int clientPort() {
    return clientPort;
  }

  public int peerPort() {
    return peerPort;
  }

  /** The server's folder (data in {@code data/}, log in {@code etcd.log}). */
  public Path dir() {
    return dir;
  }

  public Path logFile() {
    return logFile;
  }

  public boolean isRunning() {
    Process p = process;
    return p != null && p.isAlive();
  }

  /**
   * (Re)starts etcd on the same ports and data folder and waits until {@code /health} answers
   * {@code true}. A no-op if it is running.
   *
   * @throws IllegalStateException if etcd exits or does not become healthy within 20 s; the
   *     message includes the tail of its log
   */
  public synchronized void start() throws IOException {
    if (closed) {
      throw new IllegalStateException("etcd test server " + name + " is closed");
    }
    if (isRunning()) {
      return;
    }
    String client = "http://127.0.0.1:" + clientPort;
    String peer = "http://127.0.0.1:" + peerPort;
    List<String> cmd =
        List.of(
            etcdBinary.toString(),
            "--name=" + name,
            "--data-dir=" + dataDir,
            "--logger=zap",
            "--log-outputs=" + logFile,
            "--log-level=info",
            "--listen-client-urls=" + client,
            "--advertise-client-urls=" + client,
            "--listen-peer-urls=" + peer,
            "--initial-advertise-peer-urls=" + peer,
            "--initial-cluster=" + name + "=" + peer,
            "--initial-cluster-state=new",
            "--initial-cluster-token=pserver-test-" + clientPort,
            "--listen-metrics-urls=");
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile());
    scrubEnvironment(pb.environment());
    pb.redirectErrorStream(true);
    pb.redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("etcd.stdout").toFile()));
    Process p = pb.start();
    process = p;
    LIVE.add(this);
    long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
    while (System.nanoTime() < deadline) {
      if (!p.isAlive()) {
        throw new IllegalStateException(
            "etcd exited with status " + p.exitValue() + " during start-up; " + logTail());
      }
      if (healthy()) {
        return;
      }
      sleep(30);
    }
    destroyQuietly();
    throw new IllegalStateException(
        "etcd did not become healthy within " + START_TIMEOUT.toSeconds() + " s; " + logTail());
  }

  /** {@link #stop()} then {@link #start()}. */
  public void restart() throws IOException {
    stop();
    start();
  }

  /** Stops etcd with SIGTERM and waits for it to exit (SIGKILL after 10 s). Keeps the data. */
  public synchronized void stop() {
    Process p = process;
    if (p == null) {
      return;
    }
    p.destroy();
    waitFor(p);
    process = null;
  }

  /** Kills etcd with SIGKILL (a crash) and waits for it to exit. Keeps the data. */
  public synchronized void kill() {
    Process p = process;
    if (p == null) {
      return;
    }
    p.destroyForcibly();
    waitFor(p);
    process = null;
  }

  /**
   * Runs {@code etcdctl} (API v3) against this server and returns its standard output.
   *
   * @throws IllegalStateException if etcdctl is missing or exits non-zero (with its stderr)
   */
  public String etcdctl(String... args) {
    Path bin = findOnPath("etcdctl");
    List<String> cmd = new ArrayList<>();
    cmd.add(bin.toString());
    cmd.add("--endpoints=" + endpoint());
    cmd.add("--dial-timeout=2s");
    cmd.add("--command-timeout=5s");
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    scrubEnvironment(pb.environment());
    pb.environment().put("ETCDCTL_API", "3");
    try {
      Process p = pb.start();
      p.getOutputStream().close();
      CompletableFuture<String> err = readAsync(p.getErrorStream());
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(20, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IllegalStateException("etcdctl " + String.join(" ", args) + " hung");
      }
      if (p.exitValue() != 0) {
        throw new IllegalStateException(
            "etcdctl "
                + String.join(" ", args)
                + " exited with "
                + p.exitValue()
                + ": "
                + err.join().strip());
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted running etcdctl", e);
    }
  }

  /** One key as etcd stores it (from {@code etcdctl get -w json}); {@code lease} 0 means none. */
  public record Kv(String key, String value, long lease, long createRevision, long modRevision) {}

  /**
   * Every key under {@code prefix} with its value, lease and revisions, in key order, read with
   * etcdctl (so it shows what etcd holds, independent of the code under test).
   */
  public Map<String, Kv> keys(String prefix) {
    JsonObject o = JsonParser.parseString(etcdctl("get", "--prefix", prefix, "-w", "json")).getAsJsonObject();
    Map<String, Kv> out = new TreeMap<>();
    JsonArray kvs = o.has("kvs") ? o.getAsJsonArray("kvs") : new JsonArray();
    for (JsonElement e : kvs) {
      JsonObject kv = e.getAsJsonObject();
      String key = b64(kv.get("key"));
      out.put(
          key,
          new Kv(
              key,
              kv.has("value") ? b64(kv.get("value")) : "",
              kv.has("lease") ? kv.get("lease").getAsLong() : 0,
              kv.get("create_revision").getAsLong(),
              kv.get("mod_revision").getAsLong()));
    }
    return out;
  }

  private static String b64(JsonElement e) {
    return new String(Base64.getDecoder().decode(e.getAsString()), StandardCharsets.UTF_8);
  }

  /** The IDs of all leases that exist now, in hex as etcdctl prints them (zero-padded). */
  public List<String> leases() {
    List<String> ids = new ArrayList<>();
    for (String line : etcdctl("lease", "list").split("\n")) {
      line = line.strip();
      if (!line.isEmpty() && !line.startsWith("found")) {
        ids.add(line);
      }
    }
    return ids;
  }

  /** The IDs of all leases that exist now, as numbers (etcdctl zero-pads its hex). */
  public List<Long> leaseIds() {
    List<Long> ids = new ArrayList<>();
    for (String h : leases()) {
      ids.add(Long.parseUnsignedLong(h, 16));
    }
    return ids;
  }

  /** Deletes every key and revokes every lease: a clean slate between tests. */
  public void reset() {
    etcdctl("del", "", "--from-key=true");
    for (String id : leases()) {
      try {
        etcdctl("lease", "revoke", id);
      } catch (IllegalStateException e) {
        // Expired between list and revoke: fine.
      }
    }
  }

  /** Stops etcd (SIGKILL: the data is deleted anyway) and deletes its folder. Idempotent. */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    destroyQuietly();
  }

  @Override
  public String toString() {
    return "EtcdServer[" + name + " " + endpoint() + (isRunning() ? " running" : " stopped") + "]";
  }

  private void destroyQuietly() {
    Process p = process;
    if (p != null) {
      p.destroyForcibly();
      try {
        p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      process = null;
    }
    LIVE.remove(this);
    deleteTree(dir);
  }

  private boolean healthy() {
    try {
      HttpResponse<String> r =
          http.send(
              HttpRequest.newBuilder(URI.create(endpoint() + "/health"))
                  .timeout(Duration.ofMillis(500))
                  .build(),
              HttpResponse.BodyHandlers.ofString());
      return r.statusCode() == 200 && r.body().contains("\"health\":\"true\"");
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted waiting for etcd", e);
    }
  }

  private void waitFor(Process p) {
    try {
      if (!p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
    }
  }

  private String logTail() {
    try {
      List<String> lines = new ArrayList<>();
      for (Path f : List.of(dir.resolve("etcd.stdout"), logFile)) {
        if (Files.exists(f)) {
          lines.addAll(Files.readAllLines(f, StandardCharsets.UTF_8));
        }
      }
      int from = Math.max(0, lines.size() - 15);
      return "last lines of its output and " + logFile + ":\n" + String.join("\n", lines.subList(from, lines.size()));
    } catch (IOException e) {
      return "its log " + logFile + " could not be read: " + e;
    }
  }

  /** etcd and etcdctl read ETCD_* / ETCDCTL_* variables: a stray one would change our server. */
  private static void scrubEnvironment(Map<String, String> env) {
    env.keySet().removeIf(k -> k.startsWith("ETCD_") || k.startsWith("ETCDCTL_"));
  }

  private static CompletableFuture<String> readAsync(InputStream in) {
    return CompletableFuture.supplyAsync(
        () -> {
          try {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
          } catch (IOException e) {
            return "(unreadable: " + e + ")";
          }
        });
  }

  /** Finds {@code program} on {@code PATH}, or fails with instructions. */
  static Path findOnPath(String program) {
    String path = System.getenv().getOrDefault("PATH", "");
    for (String d : path.split(java.io.File.pathSeparator)) {
      if (d.isEmpty()) {
        continue;
      }
      Path p = Paths.get(d, program);
      if (Files.isExecutable(p)) {
        return p;
      }
    }
    throw new IllegalStateException(missingBinaryMessage(program, "PATH=" + path));
  }

  private static String missingBinaryMessage(String program, String where) {
    return program
        + " was not found ("
        + where
        + "). The etcd coordination tests need a real etcd server and do not skip: install"
        + " Debian's etcd-server and etcd-client (apt-get install etcd-server etcd-client), or"
        + " run bin/test, which installs them.";
  }

  private static int[] freePorts(int n) throws IOException {
    List<ServerSocket> sockets = new ArrayList<>();
    try {
      int[] ports = new int[n];
      for (int i = 0; i < n; i++) {
        ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        sockets.add(s);
        ports[i] = s.getLocalPort();
      }
      return ports;
    } finally {
      for (ServerSocket s : sockets) {
        s.close();
      }
    }
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }

  static void deleteTree(Path root) {
    if (!Files.exists(root)) {
      return;
    }
    try (Stream<Path> walk = Files.walk(root)) {
      for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    } catch (IOException e) {
      System.err.println("could not delete " + root + ": " + e);
    }
  }
}
