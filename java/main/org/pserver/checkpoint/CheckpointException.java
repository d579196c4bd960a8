package org.pserver.checkpoint;

import java.io.IOException;

/** A checkpoint that cannot be used, and why. The messages of two kinds are the seed's strings. */
public final class CheckpointException extends IOException {
  private static final long serialVersionUID = 1L;

  /** What went wrong. */
  public enum Kind {
    /** No metadata for this index: a fresh start ({@link org.pserver.Seed#CHECKPOINT_NOT_FOUND}). */
    NOT_FOUND,
    /** The file's CRC-32 differs from the metadata's ({@link org.pserver.Seed#WRONG_CHECKSUM}). */
    WRONG_CHECKSUM,
    /** The metadata is not the seed's JSON, or points outside the checkpoint directory. */
    BAD_METADATA,
    /** The file is missing, truncated or malformed. */
    CORRUPT
  }

  private final Kind kind;

  public CheckpointException(Kind kind, String message) {
    super(message);
    this.kind = kind;
  }

  public CheckpointException(Kind kind, String message, Throwable cause) {
    super(message, cause);
    this.kind = kind;
  }

  public Kind kind() {
    return kind;
  }
}
