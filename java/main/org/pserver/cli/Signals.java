package org.pserver.cli;

import org.slf4j.LoggerFactory;

/**
 * SIGTERM and SIGINT handling for the daemon. The JVM's default for SIGTERM runs shutdown hooks
 * and exits with 143; the daemon instead wants to drain, take its final checkpoint and exit 0, so
 * it takes the signals over (through {@code sun.misc.Signal}, the supported way to do this on JDK
 * 17+) and does the work on its main thread. Install the handlers before the server starts: a
 * signal that arrives earlier gets the JVM's default.
 */
final class Signals {
  private Signals() {}

  @SuppressWarnings("restriction")
  static void onTermination(Runnable action) {
    for (String name : new String[] {"TERM", "INT"}) {
      try {
        sun.misc.Signal.handle(new sun.misc.Signal(name), s -> action.run());
      } catch (IllegalArgumentException e) {
        LoggerFactory.getLogger(Signals.class).warn("cannot handle SIG{}: {}", name, e.getMessage());
      }
    }
  }
}
