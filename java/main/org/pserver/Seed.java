package org.pserver;

/**
 * The Go seed's constants and error strings, byte-identical, in one place. Clients of the seed
 * compare error messages by text, so these strings are part of the wire contract.
 */
public final class Seed {
  private Seed() {}

  /** etcd key holding the desired pserver count. */
  public static final String PS_DESIRED = "/ps_desired";

  /** etcd prefix under which pserver i publishes its address at {@code /ps/<i>}. */
  public static final String PS_PATH = "/ps/";

  /** etcd/KV prefix of the checkpoint metadata of pserver i: {@code /checkpoints/<i>}. */
  public static final String PS_CHECKPOINT = "/checkpoints/";

  /** InitParam or FinishInitParams after initialization finished. */
  public static final String ALREADY_INITIALIZED = "pserver already initialized";

  /** SendGrad before initialization finished. */
  public static final String UNINITIALIZED = "pserver not fully initialized";

  /** A checkpoint file whose CRC-32 does not match its metadata. */
  public static final String WRONG_CHECKSUM = "checkpoint file checksum validation failed";

  /** No checkpoint metadata for this index: a fresh start. */
  public static final String CHECKPOINT_NOT_FOUND = "checkpoint not found";

  /** The metadata key of pserver {@code index}. */
  public static String checkpointKey(int index) {
    return PS_CHECKPOINT + index;
  }

  /** "parameter: NAME does not exist" (SendGrad, GetParam). */
  public static String parameterDoesNotExist(String name) {
    return "parameter: " + name + " does not exist";
  }

  /** The seed's element-type mismatch message; types print as their numbers, as Go's %v did. */
  public static String typeMismatch(String name, ElementType param, ElementType grad) {
    return "Name: "
        + name
        + ", parameter and gradient element type not match, parameter: "
        + param.code()
        + ", gradient: "
        + grad.code();
  }

  /** The seed's content-length mismatch message (byte lengths). */
  public static String lengthMismatch(String name, long paramBytes, long gradBytes) {
    return "Name: "
        + name
        + ", parameter and gradient does not have same content len, parameter: "
        + paramBytes
        + ", gradient: "
        + gradBytes;
  }
}
