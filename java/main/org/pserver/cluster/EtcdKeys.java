package org.pserver.cluster;

import java.util.OptionalInt;

/**
 * Every etcd key and prefix that pserver uses, in one place: the seed's layout (see {@code
 * package-info.java} for the table with leases and writers).
 *
 * <p>Traps: index keys are plain decimal ({@code /ps/0}, {@code /ps/12}), exactly as Go's {@code
 * strconv.Itoa} writes them; {@link #parseIndex} rejects anything else ({@code /ps/01}, {@code
 * /ps/-1}, {@code /ps/x}) instead of guessing. An address value is {@code host:port} with a
 * non-empty host; the seed's tests wrote {@code ":port"}, which no remote trainer can dial, so it
 * counts as malformed here.
 */
public final class EtcdKeys {
  /** The number of pservers the job wants, decimal; written once, never on a lease. */
  public static final String PS_DESIRED = "/ps_desired";

  /** Prefix of the pserver slots: {@code /ps/<index>} = {@code host:port}, on the pserver's lease. */
  public static final String PS_PREFIX = "/ps/";

  /** Prefix of the checkpoint metadata: {@code /checkpoints/<index>} = JSON, no lease. */
  public static final String CHECKPOINT_PREFIX = "/checkpoints/";

  /**
   * The trainers' initialization mutex. Lock holders own {@code /init_ps/lock/<lease-id-hex>} (on
   * their session lease); the holder is the one whose key has the lowest create revision.
   */
  public static final String INIT_LOCK = "/init_ps/lock";

  /** Set to {@link #INIT_DONE_VALUE} once the parameters are initialized; no lease, never deleted. */
  public static final String INIT_DONE = "/init_ps/done";

  /** The only valid value of {@link #INIT_DONE}. */
  public static final String INIT_DONE_VALUE = "1";

  private EtcdKeys() {}

  /** {@code /ps/<index>}. */
  public static String pserver(int index) {
    return PS_PREFIX + checkIndex(index);
  }

  /** {@code /checkpoints/<index>}. */
  public static String checkpoint(int index) {
    return CHECKPOINT_PREFIX + checkIndex(index);
  }

  /** The key prefix under which lock holders put their keys: {@code /init_ps/lock/}. */
  public static String initLockPrefix() {
    return INIT_LOCK + "/";
  }

  /**
   * The index of a {@code /ps/<index>} key, or empty if the key is not under {@link #PS_PREFIX} or
   * its suffix is not a canonical non-negative decimal {@code int}.
   */
  public static OptionalInt parseIndex(String key) {
    if (key == null || !key.startsWith(PS_PREFIX)) {
      return OptionalInt.empty();
    }
    return parseCount(key.substring(PS_PREFIX.length()), true);
  }

  /**
   * The value of {@link #PS_DESIRED} as a positive count, or empty if it is not a canonical
   * positive decimal {@code int} (surrounding whitespace is tolerated, as {@code etcdctl put} users
   * may add a newline).
   */
  public static OptionalInt parseDesired(String value) {
    if (value == null) {
      return OptionalInt.empty();
    }
    OptionalInt n = parseCount(value.strip(), false);
    return n.isPresent() && n.getAsInt() > 0 ? n : OptionalInt.empty();
  }

  /**
   * Whether {@code value} is a dialable {@code host:port}: a non-empty host (a name, an IPv4
   * address or a bracketed IPv6 address, without spaces) and a port in 1..65535.
   */
  public static boolean isValidAddress(String value) {
    if (value == null) {
      return false;
    }
    int colon = value.lastIndexOf(':');
    if (colon <= 0 || colon == value.length() - 1) {
      return false;
    }
    String host = value.substring(0, colon);
    if (host.chars().anyMatch(c -> c <= ' ' || c == '/' || c == '@')) {
      return false;
    }
    if (host.indexOf(':') >= 0 && !(host.startsWith("[") && host.endsWith("]") && host.length() > 2)) {
      return false; // IPv6 needs brackets, or the port is ambiguous
    }
    OptionalInt port = parseCount(value.substring(colon + 1), false);
    return port.isPresent() && port.getAsInt() >= 1 && port.getAsInt() <= 65535;
  }

  private static OptionalInt parseCount(String s, boolean canonical) {
    if (s.isEmpty() || s.length() > 10) {
      return OptionalInt.empty();
    }
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c < '0' || c > '9') {
        return OptionalInt.empty();
      }
    }
    if (canonical && s.length() > 1 && s.charAt(0) == '0') {
      return OptionalInt.empty();
    }
    long v = Long.parseLong(s);
    return v > Integer.MAX_VALUE ? OptionalInt.empty() : OptionalInt.of((int) v);
  }

  private static int checkIndex(int index) {
    if (index < 0) {
      throw new IllegalArgumentException("pserver index must be >= 0, got " + index);
    }
    return index;
  }
}
