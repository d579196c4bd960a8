package org.pserver.cluster;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * One {@link EtcdServer} per test class, wiped before each test.
 *
 * <pre>{@code
 * class MyTest {
 *   @RegisterExtension static final EtcdServerExtension ETCD = new EtcdServerExtension();
 *
 *   @Test void something() {
 *     try (EtcdClient c = new EtcdClient(ETCD.endpoint(), 3, Duration.ofSeconds(1), 2)) { ... }
 *   }
 * }
 * }</pre>
 *
 * <p>Before all tests of the class it launches etcd (failing the class, not skipping it, if etcd
 * is missing); before each test it restarts etcd if a previous test left it stopped, then deletes
 * every key and revokes every lease, so each test starts from an empty store with no leases; after
 * all tests it stops etcd and deletes its data folder. Register it as a {@code static} field.
 */
public final class EtcdServerExtension
    implements BeforeAllCallback, BeforeEachCallback, AfterAllCallback {
  private final String name;
  private volatile EtcdServer server;

  public EtcdServerExtension() {
    this("test");
  }

  /** {@code name} labels the data folder, handy when several classes leave logs behind. */
  public EtcdServerExtension(String name) {
    this.name = name;
  }

  /** The running server; only valid inside the test class's lifecycle. */
  public EtcdServer server() {
    EtcdServer s = server;
    if (s == null) {
      throw new IllegalStateException("the etcd server is not running: register the extension on a static field");
    }
    return s;
  }

  /** The client endpoint URL of the server. */
  public String endpoint() {
    return server().endpoint();
  }

  @Override
  public void beforeAll(ExtensionContext context) throws Exception {
    server = EtcdServer.launch(name);
  }

  @Override
  public void beforeEach(ExtensionContext context) throws Exception {
    EtcdServer s = server();
    if (!s.isRunning()) {
      s.start();
    }
    s.reset();
  }

  @Override
  public void afterAll(ExtensionContext context) {
    EtcdServer s = server;
    server = null;
    if (s != null) {
      s.close();
    }
  }
}
