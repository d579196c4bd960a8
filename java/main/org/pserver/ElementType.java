package org.pserver;

/**
 * The element type of a parameter or gradient. The numbers are the Go seed's {@code ElementType}
 * (and {@code paddle_element_type}) values, and the wire's {@code pserver.ElementType}.
 *
 * <p>Contents are little-endian elements of {@link #size()} bytes. Optimizer state is kept in the
 * parameter's precision for the float types and in {@code double} for the integer types
 * ({@link #stateSize()}), so integer parameters can carry fractional momentum without loss.
 */
public enum ElementType {
  INT32(0, 4),
  UINT32(1, 4),
  INT64(2, 8),
  UINT64(3, 8),
  FLOAT32(4, 4),
  FLOAT64(5, 8);

  private static final ElementType[] BY_CODE = values();

  private final int code;
  private final int size;

  ElementType(int code, int size) {
    this.code = code;
    this.size = size;
  }

  /** The seed's numeric value (0..5). */
  public int code() {
    return code;
  }

  /** Bytes per element. */
  public int size() {
    return size;
  }

  /** Bytes per element of optimizer state: 4 for {@link #FLOAT32}, 8 (a double) otherwise. */
  public int stateSize() {
    return this == FLOAT32 ? 4 : 8;
  }

  /** True for {@link #FLOAT32} and {@link #FLOAT64}. */
  public boolean isFloat() {
    return this == FLOAT32 || this == FLOAT64;
  }

  /**
   * The type with the seed's numeric value {@code code}.
   *
   * @throws IllegalArgumentException if {@code code} is not 0..5
   */
  public static ElementType fromCode(int code) {
    if (code < 0 || code >= BY_CODE.length) {
      throw new IllegalArgumentException("unknown element type " + code + " (expected 0..5)");
    }
    return BY_CODE[code];
  }
}
