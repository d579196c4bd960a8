package org.pserver.service;

import java.nio.ByteBuffer;
import java.util.Objects;
import org.pserver.ElementType;

/**
 * A gradient for the parameter {@code name}: as many little-endian elements of {@code type} as the
 * parameter has, in {@code content} from its position to its limit. The seed's {@code Gradient}.
 *
 * <p>Trap: the buffer is only read, never copied more than once, and must not change until the
 * call that takes it returns. A direct buffer in native order is used in place.
 */
public record Gradient(String name, ElementType type, ByteBuffer content) {
  public Gradient {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(content, "content");
  }
}
