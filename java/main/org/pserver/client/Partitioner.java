package org.pserver.client;

import java.nio.charset.StandardCharsets;

/**
 * Which pserver holds a parameter: {@code fnv1a32(utf8(name)) mod N}, unsigned, exactly as the Go
 * seed's client computed it, so pservers and trainers of both agree.
 *
 * <p>FNV-1a 32-bit: start at 2166136261; for each byte, xor it in, then multiply by 16777619
 * modulo 2^32.
 */
public final class Partitioner {
  private static final int OFFSET_BASIS = 0x811C9DC5;
  private static final int PRIME = 0x01000193;

  private Partitioner() {}

  /** FNV-1a 32-bit hash of the UTF-8 bytes of {@code name} (as an unsigned value in an int). */
  public static int fnv1a32(String name) {
    int h = OFFSET_BASIS;
    for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
      h ^= b & 0xFF;
      h *= PRIME;
    }
    return h;
  }

  /** The index of the pserver, of {@code pservers}, that holds {@code name}. */
  public static int partition(String name, int pservers) {
    if (pservers <= 0) {
      throw new IllegalArgumentException("pserver count must be > 0, got " + pservers);
    }
    return Integer.remainderUnsigned(fnv1a32(name), pservers);
  }
}
