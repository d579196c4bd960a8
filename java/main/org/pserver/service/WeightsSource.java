package org.pserver.service;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import org.pserver.ElementType;
import org.pserver.store.Slot;

/**
 * A parameter to be read out later, by streaming its weights under its lock: what {@link
 * Service#openParams} returns. Unlike {@link Service#getParams}, nothing is copied until {@link
 * #writeTo} runs, and then the weights go from off-heap memory to the stream through a small
 * buffer the caller supplies: no copy of the whole parameter on the heap.
 *
 * <p>Each {@link #writeTo} writes one consistent copy (it holds the parameter's lock throughout,
 * so no update is half in it), of the weights as they are when it runs. Thread-safe.
 */
public final class WeightsSource {
  private final Slot slot;

  WeightsSource(Slot slot) {
    this.slot = slot;
  }

  public String name() {
    return slot.name();
  }

  public ElementType type() {
    return slot.optimizer().type();
  }

  /** The number of bytes {@link #writeTo} writes. */
  public int byteLength() {
    return slot.optimizer().byteLength();
  }

  /**
   * Writes the weights, {@link #byteLength()} little-endian bytes, to {@code out} in pieces of
   * {@code chunk.length} bytes copied through {@code chunk}, holding the parameter's lock until the
   * last piece is written. {@code out} must not block for long (gRPC's framer does not: it
   * copies into transport buffers), since updates of this parameter wait meanwhile.
   *
   * @param chunk scratch space, a multiple of 8 bytes long; its content is overwritten
   */
  public void writeTo(OutputStream out, byte[] chunk) throws IOException {
    if (chunk.length == 0 || chunk.length % 8 != 0) {
      throw new IllegalArgumentException("chunk must be a non-empty multiple of 8 bytes");
    }
    ByteBuffer view = ByteBuffer.wrap(chunk);
    slot.lock().lock();
    try {
      int n = slot.optimizer().byteLength();
      for (int at = 0; at < n; at += chunk.length) {
        int len = Math.min(chunk.length, n - at);
        slot.optimizer().copyWeightsTo(at, view.clear().limit(len));
        out.write(chunk, 0, len);
      }
    } finally {
      slot.lock().unlock();
    }
  }
}
