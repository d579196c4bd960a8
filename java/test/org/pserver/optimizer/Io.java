package org.pserver.optimizer;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernels;

/** Reading an optimizer's weights and state in tests. */
final class Io {
  private Io() {}

  /** The optimizer's weights as doubles, through {@link ParameterOptimizer#copyWeightsTo}. */
  static double[] weights(ParameterOptimizer o) {
    ByteBuffer b = ByteBuffer.allocate(o.byteLength());
    o.copyWeightsTo(b);
    return Fixtures.values(o.type(), b.flip());
  }

  static byte[] state(ParameterOptimizer o) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try {
      o.writeState(Channels.newChannel(out));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }

  static ParameterOptimizer restore(
      ElementType t, byte[] config, byte[] state, UpdateKernels k) throws IOException {
    return ParameterOptimizer.readState(
        t, config, Channels.newChannel(new ByteArrayInputStream(state)), k);
  }
}
