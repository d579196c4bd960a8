package org.pserver.cli;

import java.io.PrintWriter;
import java.util.concurrent.Callable;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.SelfCheck;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** {@code pserver kernels}: which update kernels are active, and a quick self-check of them. */
@Command(
    name = "kernels",
    mixinStandardHelpOptions = true,
    description = {
      "Prints the update kernels in use (native and its instruction set, or java and why) and",
      "runs a quick self-check: known answers plus native-vs-Java agreement on every kernel."
    })
final class KernelsCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    out.println("kernels: " + Kernels.description());
    SelfCheck.Result r = SelfCheck.run(Kernels.get());
    out.println(r.report());
    out.flush();
    return r.ok() ? 0 : 1;
  }
}
