package org.pserver.service;

import java.nio.ByteBuffer;
import java.util.Objects;
import org.pserver.ElementType;

/**
 * A named parameter: little-endian elements of {@code type} in {@code content}, from its position
 * to its limit. The seed's {@code Parameter}.
 *
 * <p>Trap: the buffer is not copied. Whoever passes one in must not change it until the call that
 * takes it returns; buffers handed out by {@link Service#getParam} are fresh copies the caller owns.
 */
public record Parameter(String name, ElementType type, ByteBuffer content) {
  public Parameter {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(content, "content");
  }
}
