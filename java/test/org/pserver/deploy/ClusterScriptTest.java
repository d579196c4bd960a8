package org.pserver.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * scripts/cluster.sh in its short form: etcd, 3 pservers and 4 trainer processes on loopback for
 * 25 s with a pserver killed and restarted every 8 s. Every restart must come back, every trainer
 * must finish its run (exit 0, or 3 for below the demo's accuracy bar), every pserver must exit 0
 * on SIGTERM, and gradients must have been applied.
 *
 * <p>Accuracy: each kill stalls every trainer until the pserver is back (a JVM start and an etcd
 * lease, several seconds), and a pserver killed before its first checkpoint comes back empty and
 * is re-initialized from a trainer's copy, so this run trains little and the demo's bar (0.60) is
 * not required. What is required is that the model learned: every trainer's final accuracy is at
 * least 0.30, where chance is 0.10, the untrained model scores 0.12 and always answering the most
 * frequent class 0.23.
 */
class ClusterScriptTest {
  private static final Path ROOT = Path.of(System.getProperty("basedir", ".")).toAbsolutePath();
  private static final double LEARNED = 0.30;

  @TempDir Path out;

  /** "java ... org.pserver.cli.Main": this JVM's classpath, not target/pserver.jar (built after the tests). */
  private static String pserverCommand() {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String cache = System.getProperty("org.bytedeco.javacpp.cachedir", "target/javacpp-cache");
    return java + " -Xmx512m -XX:+UseSerialGC -Dorg.bytedeco.javacpp.cachedir=" + cache
        + " -cp " + System.getProperty("java.class.path") + " org.pserver.cli.Main";
  }

  private static String run(Map<String, String> env, int[] exit, String... args) throws Exception {
    String[] cmd = new String[args.length + 2];
    cmd[0] = "bash";
    cmd[1] = ROOT.resolve("scripts/cluster.sh").toString();
    System.arraycopy(args, 0, cmd, 2, args.length);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().putAll(env);
    Process p = pb.start();
    String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(5, TimeUnit.MINUTES), "cluster.sh hung");
    exit[0] = p.exitValue();
    return log;
  }

  private static long number(String log, String label) {
    Matcher m = Pattern.compile(Pattern.quote(label) + "\\s+(\\d+)").matcher(log);
    assertTrue(m.find(), "no '" + label + "' in\n" + log);
    return Long.parseLong(m.group(1));
  }

  @Test
  void aShortClusterRunSurvivesPserverRestarts() throws Exception {
    int[] exit = new int[1];
    String log = run(Map.of("PSERVER_CMD", pserverCommand()), exit,
        "--duration", "25", "--kill-every", "8", "--out", out.toString());
    assertEquals(0, exit[0], log);
    assertTrue(number(log, "pserver restarts survived:") >= 2, log);
    assertEquals(0, number(log, "(failed:"), log);
    assertTrue(number(log, "gradients applied:") > 0, log);
    assertEquals(0, number(log, "trainer failures:"), log);

    Matcher exits = Pattern.compile("trainer exit codes:\\s+([\\d ]+)\\n").matcher(log);
    assertTrue(exits.find(), log);
    for (String code : exits.group(1).trim().split("\\s+")) {
      assertTrue(code.equals("0") || code.equals("3"), "a trainer exited " + code + "\n" + log);
    }
    Matcher acc = Pattern.compile("final accuracy per trainer:([^\\n]*)\\n").matcher(log);
    assertTrue(acc.find(), log);
    String[] accuracies = acc.group(1).trim().split("\\s+");
    assertEquals(4, accuracies.length, log);
    for (String a : accuracies) {
      assertTrue(a.matches("[0-9.]+") && Double.parseDouble(a) >= LEARNED, "a trainer's accuracy is " + a + "\n" + log);
    }
  }

  /**
   * A pserver that fails to start again after its kill must count as a failed restart, although
   * its log (appended to on every start) still holds the first start's "listening on". The
   * pserver command is wrapped: the first start of a pserver is real, later ones exit at once;
   * the trainer is a stand-in that just waits out the run.
   */
  @Test
  void aRestartThatNeverListensIsAFailedRestart() throws Exception {
    Path wrapper = out.resolve("pserver-once.sh");
    Files.writeString(wrapper, String.join("\n",
        "#!/usr/bin/env bash",
        "if [ \"$1\" = demo ]; then sleep 8; echo 'accuracy 0.500'; exit 0; fi",
        "marker=\"$WRAPPER_DIR/started-$(printf '%s\\n' \"$@\" | grep -A1 -x -- --index | tail -1)\"",
        "if [ -e \"$marker\" ]; then echo 'refusing to start again (test)'; exit 1; fi",
        "touch \"$marker\"",
        "exec $REAL_PSERVER_CMD \"$@\"",
        ""));
    int[] exit = new int[1];
    String log = run(Map.of("PSERVER_CMD", "bash " + wrapper, "REAL_PSERVER_CMD", pserverCommand(), "WRAPPER_DIR", out.toString()),
        exit, "--duration", "8", "--pservers", "1", "--trainers", "1", "--kill-every", "3", "--out", out.resolve("run").toString());
    assertNotEquals(0, exit[0], log);
    assertTrue(number(log, "(failed:") >= 1, log);
    assertEquals(0, number(log, "pserver restarts survived:"), log);
    assertTrue(log.contains("pserver 0 did not start"), log);
  }
}
