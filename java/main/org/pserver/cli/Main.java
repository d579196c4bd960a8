package org.pserver.cli;

import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code pserver} command line: one subcommand per job. */
@Command(
    name = "pserver",
    mixinStandardHelpOptions = true,
    versionProvider = Main.Version.class,
    description = "A parameter server for distributed training.",
    subcommands = {DemoCommand.class, ServeCommand.class, KernelsCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  public static void main(String[] args) {
    System.exit(run(args));
  }

  /** Runs the command line and returns its exit code (for tests and embedding). */
  public static int run(String... args) {
    return new CommandLine(new Main())
        .setCaseInsensitiveEnumValuesAllowed(true)
        .setExecutionExceptionHandler(Main::failed)
        .execute(args);
  }

  /** A command that failed: one line naming the problem (the stack trace at debug level). */
  private static int failed(Exception e, CommandLine cmd, CommandLine.ParseResult parsed) {
    LoggerFactory.getLogger(Main.class).debug("command failed", e);
    String msg = e.getMessage() == null ? e.toString() : e.getMessage();
    cmd.getErr().println("pserver " + cmd.getCommandName() + ": " + msg);
    cmd.getErr().flush();
    return 1;
  }

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(), "missing command");
  }

  static final class Version implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() {
      String v = Main.class.getPackage().getImplementationVersion();
      return new String[] {"pserver " + (v == null ? "(development build)" : v)};
    }
  }
}
