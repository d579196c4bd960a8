package org.pserver.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * scripts/cluster.sh in its short form: etcd, 3 pservers and 4 trainer processes on loopback for
 * 25 s with a pserver killed and restarted every 8 s; every restart must come back, no trainer may
 * fail (each must also reach the demo's accuracy bar, or its exit code is 1), every pserver must
 * exit 0 on SIGTERM, and gradients must have been applied.
 */
class ClusterScriptTest {
  private static final Path ROOT = Path.of(System.getProperty("basedir", ".")).toAbsolutePath();

  @TempDir Path out;

  @Test
  void aShortClusterRunSurvivesPserverRestarts() throws Exception {
    ProcessBuilder pb = new ProcessBuilder("bash", ROOT.resolve("scripts/cluster.sh").toString(),
        "--duration", "25", "--kill-every", "8", "--out", out.toString())
        .redirectErrorStream(true);
    // This JVM's classpath, not target/pserver.jar: the jar is built after the tests.
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String cache = System.getProperty("org.bytedeco.javacpp.cachedir", "target/javacpp-cache");
    pb.environment().put("PSERVER_CMD", java + " -Xmx512m -XX:+UseSerialGC -Dorg.bytedeco.javacpp.cachedir=" + cache
        + " -cp " + System.getProperty("java.class.path") + " org.pserver.cli.Main");
    Process p = pb.start();
    String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(5, TimeUnit.MINUTES), "cluster.sh hung");
    assertEquals(0, p.exitValue(), log);
    Matcher restarts = Pattern.compile("pserver restarts survived:\\s+(\\d+)").matcher(log);
    assertTrue(restarts.find() && Integer.parseInt(restarts.group(1)) >= 2, log);
    Matcher applied = Pattern.compile("gradients applied:\\s+(\\d+)").matcher(log);
    assertTrue(applied.find() && Long.parseLong(applied.group(1)) > 0, log);
  }
}
