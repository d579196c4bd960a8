package org.pserver.kernels;

import java.util.Locale;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Chooses the {@link UpdateKernels} implementation, once per JVM.
 *
 * <p>The mode comes from the system property {@value #PROPERTY}, else the environment variable
 * {@value #ENV}, else {@code auto}:
 *
 * <ul>
 *   <li>{@code auto}: the native kernels if the library loads and passes its known-answer
 *       self-test, otherwise the Java kernels; the choice and the reason are logged once.
 *   <li>{@code native}: the native kernels, or an {@link IllegalStateException} naming why they
 *       are unavailable. Never a silent fallback.
 *   <li>{@code java}: the pure-Java kernels.
 * </ul>
 *
 * <p>{@value #ISA_PROPERTY} / {@value #ISA_ENV} ({@code auto}, {@code avx512}, {@code avx2},
 * {@code x86-64} on x86-64 builds; {@code portable}, the only body of other builds) force the
 * native instruction set, for benchmarks and tests. Trap: a body this CPU or build lacks makes
 * the native kernels unavailable (with {@code auto} the Java kernels then run and the log says
 * why; with {@code native} start-up fails), it does not fall back to another body.
 *
 * <p>{@value #THREADS_PROPERTY} / {@value #THREADS_ENV} set how many threads one large update may
 * use (default: 2, or 1 on a single-CPU machine; 1 never splits). With more than one, {@link
 * #get()} wraps the chosen kernels in {@link ParallelKernels}, which splits updates of at least
 * {@link ParallelKernels#DEFAULT_MIN_ELEMENTS} elements and leaves smaller ones alone.
 *
 * <p>Trap: the native library is loaded at most once per JVM (and class loader); the first
 * outcome, success or the reason for failure, is final.
 */
public final class Kernels {
  public static final String PROPERTY = "pserver.kernels";
  public static final String ENV = "PSERVER_KERNELS";
  public static final String ISA_PROPERTY = "pserver.kernels.isa";
  public static final String ISA_ENV = "PSERVER_KERNELS_ISA";
  public static final String THREADS_PROPERTY = "pserver.kernels.threads";
  public static final String THREADS_ENV = "PSERVER_KERNELS_THREADS";

  private static final Logger LOG = LoggerFactory.getLogger(Kernels.class);
  private static final JavaKernels JAVA = new JavaKernels();

  /** The outcome of the one attempt to load the native kernels. */
  private static final class NativeHolder {
    static final NativeKernels KERNELS;
    static final String FAILURE;

    static {
      NativeKernels k = null;
      String failure = null;
      try {
        k = NativeKernels.load(setting(ISA_PROPERTY, ISA_ENV));
      } catch (Throwable t) {
        failure = describe(t);
      }
      KERNELS = k;
      FAILURE = failure;
    }
  }

  private static volatile UpdateKernels chosen;
  private static volatile String description;

  private Kernels() {}

  /**
   * The kernels every part of pserver uses, chosen on first call as described above.
   *
   * @throws IllegalStateException if the mode is {@code native} and the native kernels are
   *     unavailable
   * @throws IllegalArgumentException if the mode setting is not one of the three
   */
  public static UpdateKernels get() {
    UpdateKernels k = chosen;
    return k != null ? k : choose();
  }

  /**
   * What {@link #get()} chose and why, e.g. {@code native (avx512)} or {@code java (native
   * kernels unavailable: ...)}.
   */
  public static String description() {
    get();
    return description;
  }

  /** The pure-Java kernels, always available. */
  public static UpdateKernels java() {
    return JAVA;
  }

  /** The native kernels if they loaded and passed the self-test. */
  public static Optional<UpdateKernels> nativeKernels() {
    return Optional.ofNullable(NativeHolder.KERNELS);
  }

  /** Why the native kernels are unavailable, or empty if they are available. */
  public static Optional<String> nativeUnavailableReason() {
    return Optional.ofNullable(NativeHolder.FAILURE);
  }

  /** The native kernels, or an exception saying why they are unavailable. */
  public static UpdateKernels nativeOrThrow() {
    if (NativeHolder.KERNELS == null) {
      throw new IllegalStateException("native kernels unavailable: " + NativeHolder.FAILURE);
    }
    return NativeHolder.KERNELS;
  }

  private static synchronized UpdateKernels choose() {
    if (chosen == null) {
      Choice c = decide(setting(PROPERTY, ENV), NativeHolder.KERNELS, NativeHolder.FAILURE);
      int threads = threads(setting(THREADS_PROPERTY, THREADS_ENV), Runtime.getRuntime().availableProcessors());
      description = c.description();
      chosen = threads > 1
          ? new ParallelKernels(c.kernels(), threads, ParallelKernels.DEFAULT_MIN_ELEMENTS)
          : c.kernels();
      LOG.info("update kernels: {}; {}", c.description(), threads > 1
          ? "updates of " + ParallelKernels.DEFAULT_MIN_ELEMENTS + " elements or more use " + threads + " threads"
          : "one thread per update");
    }
    return chosen;
  }

  /** An implementation and the sentence that explains the choice. */
  record Choice(UpdateKernels kernels, String description) {}

  /**
   * The selection rule, free of global state: {@code mode} as read from the property or the
   * environment (null or blank: auto), and the outcome of loading the native kernels.
   */
  static Choice decide(String mode, UpdateKernels loaded, String failure) {
    String m = mode == null || mode.isBlank() ? "auto" : mode.trim().toLowerCase(Locale.ROOT);
    return switch (m) {
      case "java" -> new Choice(JAVA, "java (" + PROPERTY + "=java)");
      case "native" -> {
        if (loaded == null) {
          throw new IllegalStateException(
              PROPERTY + "=native but the native kernels are unavailable: " + failure);
        }
        yield new Choice(loaded, loaded.name());
      }
      case "auto" ->
          loaded != null
              ? new Choice(loaded, loaded.name())
              : new Choice(JAVA, "java (native kernels unavailable: " + failure + ")");
      default ->
          throw new IllegalArgumentException(
              PROPERTY + " (or " + ENV + ") must be auto, native or java; got '" + mode + "'");
    };
  }

  /** Threads per large update from the setting (null or blank: 2, capped by the CPU count). */
  static int threads(String setting, int cpus) {
    if (setting == null || setting.isBlank()) {
      return Math.max(1, Math.min(2, cpus));
    }
    int n;
    try {
      n = Integer.parseInt(setting.trim());
    } catch (NumberFormatException e) {
      n = 0;
    }
    if (n < 1 || n > 64) {
      throw new IllegalArgumentException(
          THREADS_PROPERTY + " (or " + THREADS_ENV + ") must be a number from 1 to 64; got '" + setting + "'");
    }
    return n;
  }

  private static String setting(String property, String env) {
    String v = System.getProperty(property);
    return v != null ? v : System.getenv(env);
  }

  private static String describe(Throwable t) {
    String msg = t.getMessage();
    String s = t.getClass().getSimpleName() + (msg == null ? "" : ": " + msg);
    return s.length() > 300 ? s.substring(0, 300) + "..." : s;
  }
}
