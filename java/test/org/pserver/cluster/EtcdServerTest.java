package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import org.junit.jupiter.api.Test;

/** The test harness itself: restart on the same ports and data, cleanup, and the no-skip rule. */
class EtcdServerTest {
  @Test
  void stopKillAndStartKeepPortsAndData_closeDeletesTheFolder() throws Exception {
    Path dir;
    try (EtcdServer etcd = EtcdServer.launch("harness")) {
      dir = etcd.dir();
      int port = etcd.clientPort();
      etcd.etcdctl("put", "/k", "v");
      assertTrue(Files.exists(etcd.logFile()), "zap log file in the server folder");

      etcd.stop();
      assertFalse(etcd.isRunning());
      assertThrows(IllegalStateException.class, () -> etcd.etcdctl("get", "/k"));

      etcd.start();
      assertEquals(port, etcd.clientPort());
      assertEquals("/k\nv\n", etcd.etcdctl("get", "/k"));

      etcd.kill();
      etcd.start();
      assertEquals("/k\nv\n", etcd.etcdctl("get", "/k"));

      etcd.etcdctl("lease", "grant", "60");
      assertEquals(1, etcd.leases().size());
      etcd.reset();
      assertEquals(0, etcd.leases().size());
      assertEquals("", etcd.etcdctl("get", "", "--from-key=true"));
    }
    assertFalse(Files.exists(dir), "close() deletes the data folder with its preallocated WAL");
  }

  @Test
  void missingEtcdBinaryFailsWithInstructions() {
    IllegalStateException e =
        assertThrows(
            IllegalStateException.class,
            () -> EtcdServer.create("x", Paths.get("/nonexistent/bin/etcd")));
    assertTrue(e.getMessage().contains("etcd-server"), e.getMessage());
    assertTrue(e.getMessage().contains("do not skip"), e.getMessage());
  }
}
