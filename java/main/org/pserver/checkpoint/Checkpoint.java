package org.pserver.checkpoint;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.pserver.ElementType;
import org.pserver.cluster.KVStore;
import org.pserver.kernels.Kernels;
import org.pserver.optimizer.ParameterOptimizer;
import org.pserver.store.AppliedPushes;

/**
 * A loaded checkpoint: every parameter of one pserver with its optimizer (weights, state, step
 * counter, learning-rate policy state, bit for bit as saved) and its record of applied pushes. The
 * seed's {@code Checkpoint}.
 */
public record Checkpoint(CheckpointMeta meta, List<Entry> entries) {
  /** One parameter of a checkpoint. */
  public record Entry(
      String name, ElementType type, byte[] config, ParameterOptimizer optimizer, AppliedPushes applied) {}

  /**
   * The seed's {@code LoadCheckpoint}: reads the metadata at {@code /checkpoints/<index>}, then the
   * file it names, verifies its CRC-32 and parses it. Unlike {@link CheckpointManager#recover()} it
   * neither confines the path to a directory nor falls back to an older file.
   *
   * @throws CheckpointException {@code NOT_FOUND} ("checkpoint not found") when there is no
   *     metadata, {@code WRONG_CHECKSUM} ("checkpoint file checksum validation failed"), {@code
   *     BAD_METADATA} or {@code CORRUPT}
   */
  public static Checkpoint load(KVStore store, int index) throws IOException {
    CheckpointMeta meta = CheckpointManager.readMeta(store, index);
    return CheckpointManager.load(Path.of(meta.path()), meta, index, Kernels.get());
  }
}
