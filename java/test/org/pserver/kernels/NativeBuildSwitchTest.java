package org.pserver.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/**
 * When the native kernels are built, and when a build must fail rather than test only Java.
 *
 * <p>bin/test runs here against stub tools in a PATH of their own (a fake {@code mvn} prints its
 * arguments; fake {@code g++}, {@code cmake} and {@code apt-get} are present or not), so the
 * decision is checked without building anything. The pom's no-native profiles are checked as
 * declarations: Maven cannot be asked here what /usr/bin would look like without a tool.
 */
class NativeBuildSwitchTest {
  private static final Path ROOT = Path.of(System.getProperty("basedir", ".")).toAbsolutePath();

  @TempDir Path bin;

  record Run(int exit, String output) {}

  private void stub(String name, String body) throws Exception {
    Path f = bin.resolve(name);
    Files.writeString(f, "#!" + host("bash") + "\n" + body + "\n");
    assertTrue(f.toFile().setExecutable(true));
  }

  /** A tool of this machine, by absolute path (the stub PATH has only what is linked into it). */
  private static String host(String tool) {
    for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(File.pathSeparator)) {
      Path p = Path.of(dir, tool);
      if (Files.isExecutable(p)) {
        return p.toString();
      }
    }
    throw new IllegalStateException(tool + " is not on PATH");
  }

  /** The stubs every run has: etcd and kubectl (so nothing is installed), java, mvn, sudo. */
  private void baseStubs() throws Exception {
    for (String tool : new String[] {"dirname", "head", "id", "chmod"}) {
      Files.createSymbolicLink(bin.resolve(tool), Path.of(host(tool)));
    }
    stub("etcd", "echo 'etcd Version: stub'");
    stub("etcdctl", "exit 0");
    stub("kubectl", "echo 'Client Version: stub'");
    stub("java", "exit 0");
    stub("mvn", "echo \"MVN $*\"");
    stub("sudo", "[ \"$1\" = -n ] && shift; exec \"$@\""); // as_root when the tests are not root
  }

  private Run binTest() throws Exception {
    ProcessBuilder pb = new ProcessBuilder(host("bash"), ROOT.resolve("bin/test").toString(),
        "-Dtest=X").redirectErrorStream(true);
    pb.environment().put("PATH", bin.toString());
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(30, TimeUnit.SECONDS), "bin/test hung: " + out);
    return new Run(p.exitValue(), out);
  }

  @Test
  void gxxAndCmakeBuildNativeAndRequireIt() throws Exception {
    baseStubs();
    stub("g++", "exit 0");
    stub("cmake", "echo 'cmake version 3.25.1'");
    Run r = binTest();
    assertEquals(0, r.exit(), r.output());
    assertTrue(r.output().contains(
        "MVN -B -ntp verify -Dnative.skip=false -Dpserver.kernels.expect=native -Dtest=X"), r.output());
  }

  /** The case that used to go green on the Java kernels alone: g++ present, cmake missing. */
  @Test
  void gxxWithoutCmakeFailsLoudlyWhenCmakeCannotBeInstalled() throws Exception {
    baseStubs();
    stub("g++", "exit 0");
    stub("apt-get", "exit 100");
    Run r = binTest();
    assertNotEquals(0, r.exit(), r.output());
    assertTrue(r.output().contains("ERROR: g++ is on PATH but cmake is not"), r.output());
    assertFalse(r.output().contains("MVN"), "Maven ran anyway: " + r.output());
  }

  @Test
  void gxxWithoutCmakeInstallsCmakeAndBuildsNative() throws Exception {
    baseStubs();
    stub("g++", "exit 0");
    stub("apt-get", "[ \"$1\" = install ] || exit 0\n"
        + "printf '#!/bin/sh\\necho cmake version 3.25.1\\n' > '" + bin.resolve("cmake") + "'\n"
        + "chmod +x '" + bin.resolve("cmake") + "'");
    Run r = binTest();
    assertEquals(0, r.exit(), r.output());
    assertTrue(r.output().contains("installing Debian's cmake"), r.output());
    assertTrue(r.output().contains("-Dpserver.kernels.expect=native"), r.output());
  }

  @Test
  void withoutGxxTheJavaKernelsAreTested() throws Exception {
    baseStubs();
    stub("cmake", "echo 'cmake version 3.25.1'");
    Run r = binTest();
    assertEquals(0, r.exit(), r.output());
    assertTrue(r.output().contains("MVN -B -ntp verify -Dnative.skip=true -Djavacpp.skip=true -Dtest=X"),
        r.output());
    assertFalse(r.output().contains("kernels.expect=native"), r.output());
  }

  /**
   * A plain {@code mvn verify} skips the native steps when either tool is missing: one profile per
   * tool (Maven 3.8 activates on one file per profile, all conditions of a profile together), each
   * off when native.skip is given, so that bin/test's -Dnative.skip=false wins.
   */
  @Test
  void pomSkipsNativeWhenEitherToolIsMissing() throws Exception {
    DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
    f.setNamespaceAware(false);
    Document pom = f.newDocumentBuilder().parse(ROOT.resolve("pom.xml").toFile());
    Map<String, Element> byMissingFile = new HashMap<>();
    NodeList profiles = pom.getElementsByTagName("profile");
    for (int i = 0; i < profiles.getLength(); i++) {
      Element p = (Element) profiles.item(i);
      NodeList missing = p.getElementsByTagName("missing");
      for (int j = 0; j < missing.getLength(); j++) {
        byMissingFile.put(missing.item(j).getTextContent().trim(), p);
      }
    }
    for (String tool : new String[] {"/usr/bin/g++", "/usr/bin/cmake"}) {
      Element p = byMissingFile.get(tool);
      assertTrue(p != null, "no profile activates when " + tool + " is missing");
      for (String prop : new String[] {"native.skip", "javacpp.skip", "ctest.skip"}) {
        NodeList v = p.getElementsByTagName(prop);
        assertEquals(1, v.getLength(), tool + ": " + prop);
        assertEquals("true", v.item(0).getTextContent().trim(), tool + ": " + prop);
      }
      NodeList names = p.getElementsByTagName("name");
      assertEquals(1, names.getLength(), tool + ": one property condition");
      assertEquals("!native.skip", names.item(0).getTextContent().trim(), tool);
    }
  }
}
