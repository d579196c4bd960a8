package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;

/** Key names and the strict parsing of what other processes (or people) wrote into etcd. */
class EtcdKeysTest {
  @Test
  void keysAreTheSeedLayout() {
    assertEquals("/ps_desired", EtcdKeys.PS_DESIRED);
    assertEquals("/ps/0", EtcdKeys.pserver(0));
    assertEquals("/ps/12", EtcdKeys.pserver(12));
    assertEquals("/checkpoints/3", EtcdKeys.checkpoint(3));
    assertEquals("/init_ps/lock", EtcdKeys.INIT_LOCK);
    assertEquals("/init_ps/lock/", EtcdKeys.initLockPrefix());
    assertEquals("/init_ps/done", EtcdKeys.INIT_DONE);
    assertEquals("1", EtcdKeys.INIT_DONE_VALUE);
    assertThrows(IllegalArgumentException.class, () -> EtcdKeys.pserver(-1));
  }

  @Test
  void indexKeysMustBeCanonicalDecimal() {
    assertEquals(OptionalInt.of(0), EtcdKeys.parseIndex("/ps/0"));
    assertEquals(OptionalInt.of(42), EtcdKeys.parseIndex("/ps/42"));
    assertEquals(OptionalInt.of(Integer.MAX_VALUE), EtcdKeys.parseIndex("/ps/2147483647"));
    for (String bad :
        new String[] {"/ps/", "/ps/01", "/ps/-1", "/ps/+1", "/ps/1a", "/ps/ 1", "/ps/2147483648", "/ps/99999999999", "/ps_desired", "/psx/1", "ps/1", null}) {
      assertTrue(EtcdKeys.parseIndex(bad).isEmpty(), String.valueOf(bad));
    }
  }

  @Test
  void desiredMustBeAPositiveInteger() {
    assertEquals(OptionalInt.of(3), EtcdKeys.parseDesired("3"));
    assertEquals(OptionalInt.of(3), EtcdKeys.parseDesired("3\n"), "etcdctl users add newlines");
    for (String bad : new String[] {"0", "-1", "three", "", " ", "3.0", "1e3", "99999999999", null}) {
      assertTrue(EtcdKeys.parseDesired(bad).isEmpty(), String.valueOf(bad));
    }
  }

  @Test
  void addressesNeedAHostAndAPort() {
    for (String ok : new String[] {"127.0.0.1:8001", "ps-0.ps.svc:8001", "[::1]:8001", "h:1", "h:65535"}) {
      assertTrue(EtcdKeys.isValidAddress(ok), ok);
    }
    for (String bad :
        new String[] {":8001", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "h:65536", "h:x", "::1:8001", "a b:1", "http://h:1", "", null}) {
      assertFalse(EtcdKeys.isValidAddress(bad), String.valueOf(bad));
    }
  }

  @Test
  void endpointListsAreValidatedAndMessagesAreShort() {
    assertEquals(2, Etcd.parseEndpoints("http://a:1, b:2").length);
    assertEquals("http://b:2", Etcd.parseEndpoints("b:2")[0].toString());
    assertThrows(IllegalArgumentException.class, () -> Etcd.parseEndpoints(" , "));
    assertThrows(IllegalArgumentException.class, () -> Etcd.parseEndpoints("a"));
    assertEquals("https://b:2", Etcd.parseEndpoints("https://a:1,b:2")[1].toString(), "a bare host:port follows");
    assertThrows(IllegalArgumentException.class, () -> Etcd.parseEndpoints("https://a:1,http://b:2"));
    assertThrows(IllegalArgumentException.class, () -> Etcd.parseEndpoints("ftp://a:1"));
    assertEquals("'a\\x0ab'", Etcd.quote("a\nb"));
    assertTrue(Etcd.quote("x".repeat(500)).endsWith("...(500 chars)'"));
    assertEquals("250 ms", Etcd.format(Duration.ofMillis(250)));
    assertEquals("1.5 s", Etcd.format(Duration.ofMillis(1500)));
    assertEquals("5 s", Etcd.format(Duration.ofSeconds(5)));
  }

  @Test
  void leaseBoundsLeaveASafetyMargin() {
    long s = 1_000_000_000L;
    assertEquals(2 * s - s / 5, LeaseKeeper.bound(2), "TTL 2 s: 200 ms margin");
    assertEquals(5 * s - s / 2, LeaseKeeper.bound(5));
    assertEquals(60 * s - s, LeaseKeeper.bound(60), "margin capped at 1 s");
    assertEquals(2 * s / 3, LeaseKeeper.intervalNanos(2), "keep-alive every TTL/3");
  }
}
