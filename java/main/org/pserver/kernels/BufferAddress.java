package org.pserver.kernels;

import java.nio.Buffer;
import org.bytedeco.javacpp.Pointer;

/**
 * FOR INTERNAL USE ONLY: the base address of a direct buffer, through JavaCPP's JNI helper (one
 * {@code GetDirectBufferAddress} call). Needs the native library loaded; only {@link
 * NativeKernels} uses it.
 */
final class BufferAddress extends Pointer {
  private BufferAddress() {}

  static long of(Buffer buffer) {
    return getDirectBufferAddress(buffer);
  }
}
