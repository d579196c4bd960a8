package org.pserver.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.Gson;
import io.kubernetes.client.openapi.JSON;
import io.kubernetes.client.openapi.models.V1Container;
import io.kubernetes.client.openapi.models.V1ContainerPort;
import io.kubernetes.client.openapi.models.V1EnvVar;
import io.kubernetes.client.openapi.models.V1Job;
import io.kubernetes.client.openapi.models.V1PodDisruptionBudget;
import io.kubernetes.client.openapi.models.V1PodSpec;
import io.kubernetes.client.openapi.models.V1Probe;
import io.kubernetes.client.openapi.models.V1Service;
import io.kubernetes.client.openapi.models.V1ServicePort;
import io.kubernetes.client.openapi.models.V1StatefulSet;
import io.kubernetes.client.openapi.models.V1Volume;
import io.kubernetes.client.openapi.models.V1VolumeMount;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.cli.Main;
import org.yaml.snakeyaml.Yaml;
import picocli.CommandLine;

/**
 * deploy/ as Kubernetes would see it: {@code deploy/validate.sh} renders every kustomization with
 * kubectl (a real tool; it needs no cluster for that), then every rendered object is parsed
 * strictly by the Kubernetes API's own models (a misspelt field, a wrong type or a missing
 * required field fails), and the properties the pserver relies on are checked: index from the pod
 * ordinal, a volume per pserver at the checkpoint path, gRPC probes on the plaintext health port,
 * a grace period longer than the shutdown grace, non-root, resources, env vars that are real
 * {@code serve} flags, and trainer args that the real {@code demo} command line accepts and that
 * train against the cluster's pservers, writing on a writable mount.
 */
class DeployManifestsTest {
  private static final Path ROOT = Path.of(System.getProperty("basedir", ".")).toAbsolutePath();
  private static final Map<String, Class<?>> MODELS = Map.of(
      "Service", V1Service.class, "StatefulSet", V1StatefulSet.class, "Job", V1Job.class,
      "PodDisruptionBudget", V1PodDisruptionBudget.class);

  @TempDir static Path rendered;
  static Map<String, List<Object>> objects = new java.util.HashMap<>();

  @BeforeAll
  static void render() throws Exception {
    Process p = new ProcessBuilder("bash", ROOT.resolve("deploy/validate.sh").toString(), rendered.toString())
        .redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "validate.sh hung");
    if (p.exitValue() == 2 && out.contains("kubectl not found")) {
      fail("kubectl is needed to validate deploy/: run bin/test, which installs Debian's kubernetes-client\n" + out);
    }
    assertEquals(0, p.exitValue(), out);
    JSON json = new JSON();
    Gson gson = new Gson();
    for (String name : List.of("base", "overlays-tls", "trainer")) {
      List<Object> list = new ArrayList<>();
      for (Object doc : new Yaml().loadAll(Files.readString(rendered.resolve(name + ".yaml")))) {
        String kind = String.valueOf(((Map<?, ?>) doc).get("kind"));
        Class<?> model = MODELS.get(kind);
        assertNotNull(model, name + ": unexpected kind " + kind);
        try {
          list.add(json.deserialize(gson.toJson(doc), model));
        } catch (RuntimeException e) {
          fail(name + ": " + kind + " does not fit the Kubernetes API: " + e.getMessage());
        }
      }
      objects.put(name, list);
    }
  }

  private static <T> List<T> all(String set, Class<T> type) {
    return objects.get(set).stream().filter(type::isInstance).map(type::cast).toList();
  }

  private static <T> T one(String set, Class<T> type, String name) {
    return all(set, type).stream().filter(o -> name.equals(meta(o))).findFirst()
        .orElseThrow(() -> new AssertionError("no " + type.getSimpleName() + " " + name + " in " + set));
  }

  private static String meta(Object o) {
    if (o instanceof V1Service s) {
      return s.getMetadata().getName();
    }
    if (o instanceof V1StatefulSet s) {
      return s.getMetadata().getName();
    }
    if (o instanceof V1Job j) {
      return j.getMetadata().getName();
    }
    return ((V1PodDisruptionBudget) o).getMetadata().getName();
  }

  private static V1Container container(V1PodSpec pod, String name) {
    return pod.getContainers().stream().filter(c -> c.getName().equals(name)).findFirst().orElseThrow();
  }

  private static V1EnvVar env(V1Container c, String name) {
    return c.getEnv().stream().filter(e -> e.getName().equals(name)).findFirst()
        .orElseThrow(() -> new AssertionError("no env " + name + " in " + c.getName()));
  }

  private static int port(V1Container c, String name) {
    return c.getPorts().stream().filter(p -> name.equals(p.getName())).mapToInt(V1ContainerPort::getContainerPort).findFirst()
        .orElseThrow(() -> new AssertionError("no port " + name));
  }

  /** Long option names of `pserver serve`, as their PSERVER_ environment variables. */
  private static Set<String> serveEnvVars() {
    Set<String> vars = new HashSet<>();
    CommandLine serve = new CommandLine(new Main()).getSubcommands().get("serve");
    for (CommandLine.Model.OptionSpec o : serve.getCommandSpec().options()) {
      vars.add("PSERVER_" + o.longestName().replaceFirst("^--", "").replace('-', '_').toUpperCase(java.util.Locale.ROOT));
    }
    return vars;
  }

  private static void assertHardened(V1PodSpec pod, V1Container c) {
    assertEquals(Boolean.TRUE, pod.getSecurityContext().getRunAsNonRoot());
    assertNotEquals(0L, pod.getSecurityContext().getRunAsUser());
    assertEquals(Boolean.FALSE, c.getSecurityContext().getAllowPrivilegeEscalation());
    assertEquals(Boolean.TRUE, c.getSecurityContext().getReadOnlyRootFilesystem());
    assertEquals(List.of("ALL"), c.getSecurityContext().getCapabilities().getDrop());
    assertNotNull(c.getResources().getRequests().get("cpu"), c.getName());
    assertEquals(c.getResources().getRequests().get("memory"), c.getResources().getLimits().get("memory"), c.getName() + ": memory request = limit");
  }

  @Test
  void pserversAreAStatefulSetWhoseOrdinalIsTheIndex() {
    for (String set : List.of("base", "overlays-tls")) {
      V1StatefulSet ss = one(set, V1StatefulSet.class, "pserver");
      V1PodSpec pod = ss.getSpec().getTemplate().getSpec();
      V1Container c = container(pod, "pserver");
      assertEquals(List.of("serve"), c.getArgs());
      assertEquals("metadata.labels['apps.kubernetes.io/pod-index']", env(c, "PSERVER_INDEX").getValueFrom().getFieldRef().getFieldPath());
      assertEquals(ss.getSpec().getReplicas(), Integer.valueOf(env(c, "PSERVER_NUM_PSERVERS").getValue()));
      assertEquals("pserver", ss.getSpec().getServiceName());
      assertEquals("None", one(set, V1Service.class, "pserver").getSpec().getClusterIP());
      assertEquals(port(c, "grpc"), Integer.parseInt(env(c, "PSERVER_PORT").getValue()));

      // etcd: the endpoint names the etcd Service's pod and client port.
      URI etcd = URI.create(env(c, "PSERVER_ETCD_ENDPOINT").getValue());
      String[] host = etcd.getHost().split("\\.");
      V1Service etcdService = one(set, V1Service.class, host[1]);
      assertEquals(host[1] + "-0", host[0]);
      assertTrue(etcdService.getSpec().getPorts().stream().map(V1ServicePort::getPort).anyMatch(p -> p == etcd.getPort()));
      assertEquals(1, one(set, V1StatefulSet.class, host[1]).getSpec().getReplicas());

      // One PersistentVolumeClaim per pserver, mounted at the checkpoint path.
      String ckpt = env(c, "PSERVER_CHECKPOINT_PATH").getValue();
      assertEquals(1, ss.getSpec().getVolumeClaimTemplates().size());
      String claim = ss.getSpec().getVolumeClaimTemplates().get(0).getMetadata().getName();
      assertTrue(c.getVolumeMounts().stream().anyMatch(m -> m.getName().equals(claim) && m.getMountPath().equals(ckpt)), "checkpoints on the claim");
      assertTrue(c.getVolumeMounts().stream().anyMatch(m -> m.getMountPath().equals("/tmp")), "a writable /tmp for the read-only root");

      // Native gRPC probes on the plaintext health port; liveness independent of fencing.
      int health = Integer.parseInt(env(c, "PSERVER_HEALTH_PORT").getValue());
      assertEquals(port(c, "health"), health);
      for (V1Probe probe : List.of(c.getReadinessProbe(), c.getLivenessProbe(), c.getStartupProbe())) {
        assertNotNull(probe.getGrpc(), "a grpc probe");
        assertEquals(health, probe.getGrpc().getPort());
      }
      assertEquals("liveness", c.getLivenessProbe().getGrpc().getService());
      assertEquals("liveness", c.getStartupProbe().getGrpc().getService());
      String ready = c.getReadinessProbe().getGrpc().getService();
      assertTrue(ready == null || ready.isEmpty(), "readiness follows the overall status");

      // SIGTERM's drain and final checkpoint fit in the grace period.
      long grace = Long.parseLong(env(c, "PSERVER_SHUTDOWN_GRACE").getValue().replace("s", ""));
      assertTrue(pod.getTerminationGracePeriodSeconds() >= grace + 60, "terminationGracePeriodSeconds " + pod.getTerminationGracePeriodSeconds());

      // Metrics: the port, the container port and the scrape annotation agree.
      int metrics = Integer.parseInt(env(c, "PSERVER_METRICS_PORT").getValue());
      assertEquals(port(c, "metrics"), metrics);
      assertEquals(Integer.toString(metrics), ss.getSpec().getTemplate().getMetadata().getAnnotations().get("prometheus.io/port"));

      assertHardened(pod, c);
      assertNotNull(one(set, V1PodDisruptionBudget.class, "pserver").getSpec().getMaxUnavailable());
      assertHardened(one(set, V1StatefulSet.class, "etcd").getSpec().getTemplate().getSpec(),
          container(one(set, V1StatefulSet.class, "etcd").getSpec().getTemplate().getSpec(), "etcd"));
    }
  }

  @Test
  void everyPserverEnvVarIsARealServeFlag() {
    Set<String> known = serveEnvVars();
    assertTrue(known.contains("PSERVER_METRICS_PORT") && known.contains("PSERVER_TLS_CLIENT_CA"), known.toString());
    for (String set : List.of("base", "overlays-tls")) {
      for (V1EnvVar e : container(one(set, V1StatefulSet.class, "pserver").getSpec().getTemplate().getSpec(), "pserver").getEnv()) {
        assertTrue(known.contains(e.getName()) || e.getName().equals("JAVA_TOOL_OPTIONS"), set + ": " + e.getName() + " is not a serve flag");
      }
    }
  }

  @Test
  void theTlsOverlayReadsItsFilesFromMountedSecrets() {
    V1PodSpec pod = one("overlays-tls", V1StatefulSet.class, "pserver").getSpec().getTemplate().getSpec();
    V1Container c = container(pod, "pserver");
    for (String var : List.of("PSERVER_TLS_CERT", "PSERVER_TLS_KEY", "PSERVER_TLS_CLIENT_CA", "PSERVER_AUTH_TOKEN_FILE")) {
      Path file = Path.of(env(c, var).getValue());
      V1VolumeMount m = c.getVolumeMounts().stream().filter(v -> file.startsWith(v.getMountPath())).findFirst()
          .orElseThrow(() -> new AssertionError(var + " is not on a mounted volume"));
      V1Volume v = pod.getVolumes().stream().filter(x -> x.getName().equals(m.getName())).findFirst().orElseThrow();
      assertNotNull(v.getSecret(), var + " comes from a Secret");
      assertEquals(Boolean.TRUE, m.getReadOnly());
    }
    V1PodSpec base = one("base", V1StatefulSet.class, "pserver").getSpec().getTemplate().getSpec();
    assertFalse(container(base, "pserver").getEnv().stream().anyMatch(e -> e.getName().startsWith("PSERVER_TLS")), "the base is plaintext");
  }

  /**
   * The trainer Job's args, parsed by the real {@code pserver demo} command line (with its
   * defaults): it trains against the cluster's pservers found through the same etcd (no pservers
   * of its own, no static addresses), one trainer per pod, and writes its output on a writable
   * mount, as the root file system is read-only.
   */
  @Test
  void theTrainerJobRunsTheDemoAgainstTheClustersPservers() {
    V1Job job = one("trainer", V1Job.class, "trainer");
    assertEquals("Indexed", job.getSpec().getCompletionMode());
    V1PodSpec pod = job.getSpec().getTemplate().getSpec();
    V1Container c = container(pod, "trainer");
    CommandLine.ParseResult parsed = new CommandLine(new Main()).parseArgs(c.getArgs().toArray(new String[0]));
    assertTrue(parsed.hasSubcommand(), c.getArgs().toString());
    CommandLine.Model.CommandSpec demo = parsed.subcommand().commandSpec();
    assertEquals("demo", demo.name());
    V1Container ps = container(one("base", V1StatefulSet.class, "pserver").getSpec().getTemplate().getSpec(), "pserver");
    assertEquals(env(ps, "PSERVER_ETCD_ENDPOINT").getValue(), demo.findOption("--etcd").getValue());
    assertEquals(Integer.valueOf(0), demo.findOption("--pservers").getValue(), "trainers only: the pservers are the StatefulSet's");
    assertEquals(List.of(), demo.findOption("--pserver").getValue(), "pservers found through etcd");
    assertEquals(Integer.valueOf(1), demo.findOption("--trainers").getValue(), "one trainer per pod");

    Path out = (Path) demo.findOption("--out").getValue();
    assertTrue(out.isAbsolute(), "--out " + out + " is relative to the image's read-only WORKDIR");
    V1VolumeMount m = c.getVolumeMounts().stream().filter(v -> out.startsWith(v.getMountPath())).findFirst()
        .orElseThrow(() -> new AssertionError("--out " + out + " is not on a mounted volume; the root file system is read-only"));
    assertTrue(m.getReadOnly() == null || !m.getReadOnly(), m.getMountPath() + " is mounted read-only");
    V1Volume v = pod.getVolumes().stream().filter(x -> x.getName().equals(m.getName())).findFirst().orElseThrow();
    assertNotNull(v.getEmptyDir(), "--out on a scratch volume");

    assertEquals(ps.getImage(), c.getImage());
    assertHardened(pod, c);
  }
}
