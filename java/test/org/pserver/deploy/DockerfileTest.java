package org.pserver.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonParser;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * The Dockerfile, checked statically (no container engine here, and hadolint is not packaged): a
 * build stage with JDK 17, Maven, g++ and cmake that runs the jar build on every source it needs;
 * a JRE 17 runtime stage that runs the jar as a fixed non-root user with {@code serve} as the
 * default command; and a .dockerignore that keeps local state out without hiding a needed source.
 */
class DockerfileTest {
  private static final Path ROOT = Path.of(System.getProperty("basedir", ".")).toAbsolutePath();

  /** One instruction: keyword and arguments, continuation lines joined, comments dropped. */
  record Instruction(String keyword, String args) {}

  static List<List<Instruction>> stages() throws Exception {
    List<List<Instruction>> stages = new ArrayList<>();
    StringBuilder line = new StringBuilder();
    for (String raw : Files.readAllLines(ROOT.resolve("Dockerfile"))) {
      String t = raw.strip();
      if (t.startsWith("#") || (t.isEmpty() && line.length() == 0)) {
        continue;
      }
      if (t.endsWith("\\")) {
        line.append(t, 0, t.length() - 1).append(' ');
        continue;
      }
      line.append(t);
      String full = line.toString().strip();
      line.setLength(0);
      if (full.isEmpty()) {
        continue;
      }
      int sp = full.indexOf(' ');
      Instruction i = new Instruction(full.substring(0, sp).toUpperCase(java.util.Locale.ROOT), full.substring(sp + 1).strip());
      if (i.keyword().equals("FROM")) {
        stages.add(new ArrayList<>());
      }
      stages.get(stages.size() - 1).add(i);
    }
    return stages;
  }

  private static List<String> all(List<Instruction> stage, String keyword) {
    return stage.stream().filter(i -> i.keyword().equals(keyword)).map(Instruction::args).toList();
  }

  private static List<String> execForm(String json) {
    List<String> out = new ArrayList<>();
    JsonParser.parseString(json).getAsJsonArray().forEach(e -> out.add(e.getAsString()));
    return out;
  }

  @Test
  void buildStageMakesTheJarWithTheNativeKernels() throws Exception {
    List<List<Instruction>> stages = stages();
    assertEquals(2, stages.size(), "multi-stage: build and runtime");
    List<Instruction> build = stages.get(0);
    String from = build.get(0).args();
    assertTrue(from.matches("maven:\\S*temurin-17\\S* AS build"), from);
    String runs = String.join("\n", all(build, "RUN"));
    assertTrue(runs.contains("apt-get install") && runs.contains(" g++") && runs.contains(" cmake"), runs);
    assertTrue(runs.contains("mvn -B -ntp package -DskipTests"), runs);
    assertTrue(runs.contains("org/pserver/kernels/linux-x86_64/libjniPsKernelsLib.so"), "the build checks the native library is in the jar");
    Path lib = ROOT.resolve("target/classes/org/pserver/kernels/linux-x86_64/libjniPsKernelsLib.so");
    if (Files.exists(ROOT.resolve("target/native"))) {
      assertTrue(Files.exists(lib), "the native build puts the library where the Dockerfile looks: " + lib);
    }

    // It copies exactly what the Maven build reads, and all of it exists.
    Set<String> copied = new TreeSet<>();
    for (String c : all(build, "COPY")) {
      String[] parts = c.split("\\s+");
      for (int i = 0; i < parts.length - 1; i++) {
        copied.add(parts[i].replaceAll("/$", ""));
      }
    }
    assertEquals(new TreeSet<>(List.of("pom.xml", "CMakeLists.txt", "proto", "native", "java", "bench")), copied);
    for (String c : copied) {
      assertTrue(Files.exists(ROOT.resolve(c)), c);
    }
    String pom = Files.readString(ROOT.resolve("pom.xml"));
    for (String dir : List.of("java/main", "java/test", "java/resources", "bench/java")) {
      assertTrue(pom.contains(dir), "the pom reads " + dir + ", which the build stage must copy");
    }
  }

  @Test
  void runtimeStageRunsTheJarAsNonRoot() throws Exception {
    List<Instruction> run = stages().get(1);
    String from = run.get(0).args();
    assertTrue(from.matches("eclipse-temurin:17[-.\\w]*jre\\S*"), from);
    List<String> copies = all(run, "COPY");
    assertTrue(copies.contains("--from=build /src/target/pserver.jar /app/pserver.jar"), copies.toString());
    List<String> users = all(run, "USER");
    assertEquals(1, users.size());
    String uid = users.get(0).split(":")[0];
    assertTrue(uid.matches("\\d+"), "numeric user, so runAsNonRoot can verify it: " + uid);
    assertNotEquals("0", uid);
    assertEquals(List.of("SIGTERM"), all(run, "STOPSIGNAL"));
    List<String> entry = execForm(all(run, "ENTRYPOINT").get(0));
    assertEquals("java", entry.get(0));
    assertEquals(List.of("-jar", "/app/pserver.jar"), entry.subList(entry.size() - 2, entry.size()));
    assertEquals(List.of("serve"), execForm(all(run, "CMD").get(0)));
    String exposed = String.join(" ", all(run, "EXPOSE"));
    for (String port : List.of("8001", "8002", "9090")) {
      assertTrue(exposed.contains(port), "EXPOSE " + port + " as deploy/ uses it");
    }
  }

  @Test
  void dockerignoreKeepsLocalStateOutButNoSource() throws Exception {
    List<String> ignored = Files.readAllLines(ROOT.resolve(".dockerignore")).stream()
        .map(String::strip).filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
    assertTrue(ignored.contains("target") && ignored.contains(".git"), ignored.toString());
    for (String needed : List.of("pom.xml", "CMakeLists.txt", "proto", "native", "java", "bench")) {
      assertFalse(ignored.contains(needed), needed + " is ignored but the build copies it");
    }
  }
}
