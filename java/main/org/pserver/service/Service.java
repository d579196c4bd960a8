package org.pserver.service;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.pserver.Seed;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.checkpoint.CheckpointMeta;
import org.pserver.kernels.OffHeap;
import org.pserver.kernels.UpdateKernels;
import org.pserver.metrics.Metrics;
import org.pserver.metrics.Metrics.Rejection;
import org.pserver.optimizer.OptimizerException;
import org.pserver.optimizer.ParameterOptimizer;
import org.pserver.service.PServerException.Code;
import org.pserver.store.AppliedPushes;
import org.pserver.store.ParameterStore;
import org.pserver.store.Slot;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The parameter store of one pserver and its operations, free of any transport: the seed's {@code
 * Service}. The gRPC layer only adapts the wire to it; Java programs can embed it directly.
 *
 * <h2>Life cycle</h2>
 *
 * <ul>
 *   <li>Before {@link #finishInitParams()}: {@link #initParam} stores parameters; {@link
 *       #sendGrads} fails with "pserver not fully initialized"; {@link #getParam} waits (until its
 *       deadline, its cancellation, or {@link #endWaits()}).
 *   <li>{@link #finishInitParams()} succeeds exactly once, even when calls race; later calls, and
 *       {@link #initParam}, fail with "pserver already initialized". It starts the periodic
 *       checkpoints.
 *   <li>A service restored from a {@link Checkpoint} starts initialized and keeps checkpointing
 *       (the seed stopped).
 *   <li>{@link #close()} refuses new writes, waits for the ones in flight, takes a final checkpoint
 *       and stops: every acknowledged update is in that checkpoint, or it throws.
 * </ul>
 *
 * <h2>Writes and fencing</h2>
 *
 * Every write ({@link #initParam}, {@link #finishInitParams}, {@link #sendGrads}, {@link
 * #checkpoint}) consults the {@link WriteGate} first and is refused with UNAVAILABLE while the gate
 * is closed (a fenced, possibly deposed pserver must not acknowledge anything) or the service is
 * shutting down.
 *
 * <h2>Updates</h2>
 *
 * Gradients are applied as they arrive (asynchronous SGD). Updates to different parameters run in
 * parallel; updates to one parameter never interleave, so none is lost. A call with many gradients
 * checks all of them (names, types, lengths, NaN/Inf) before applying any: all or nothing. With a
 * trainer id and sequence number a push is applied at most once; a repeat is acknowledged as a
 * duplicate. Reads return consistent copies, never torn ones.
 *
 * <p>Every failure is a {@link PServerException} whose code says why; when one is thrown nothing
 * changed, with one exception. Trap: {@link #sendGrads} checks the gate again after applying, and
 * if ownership was lost meanwhile it throws UNAVAILABLE although the push <em>may have been
 * applied</em> (its message says so); a retry with the same trainer id and sequence number is
 * deduplicated wherever the update survived, a retry without them may apply it twice. Thread-safe.
 */
public final class Service implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Service.class);

  /** Whether writes may be acknowledged right now (etcd fencing); null means yes. */
  @FunctionalInterface
  public interface WriteGate {
    /** Null if this pserver may acknowledge writes, else the reason it may not. */
    String refusal();

    WriteGate OPEN = () -> null;
  }

  /** Settings of a service. */
  public record Options(
      int index,
      UpdateKernels kernels,
      Duration checkpointInterval,
      boolean allowNonFinite,
      Duration dedupTtl) {
    public Options {
      Objects.requireNonNull(kernels, "kernels");
      Objects.requireNonNull(checkpointInterval, "checkpointInterval");
      Objects.requireNonNull(dedupTtl, "dedupTtl");
    }
  }

  private final Options options;
  private final CheckpointManager checkpoints;
  private final WriteGate gate;
  private final ParameterStore store = new ParameterStore();
  /** Readers waiting for initialization wait on {@link #waitsChanged}. */
  private final ReentrantLock waits = new ReentrantLock();
  private final Condition waitsChanged = waits.newCondition();
  /** Init calls hold the read lock; finishing takes the write lock, so no init slips in after. */
  private final ReentrantReadWriteLock initLock = new ReentrantReadWriteLock();
  /** Writes hold the read lock; shutdown takes the write lock to wait for the ones in flight. */
  private final ReentrantReadWriteLock drain = new ReentrantReadWriteLock();

  private volatile boolean initialized;
  private volatile boolean closing;
  private volatile boolean waitsEnded;
  /** The checkpoint this service started from, or null. */
  private final CheckpointMeta restoredFrom;
  private volatile Metrics metrics = Metrics.NONE;
  private ScheduledExecutorService scheduler;
  private boolean stopped;

  /**
   * A service for pserver {@code options.index()}.
   *
   * @param checkpoints where checkpoints go; null disables checkpointing
   * @param restored a checkpoint to start from (the service then starts initialized), or null
   * @param gate consulted before every write is acknowledged ({@link WriteGate#OPEN} standalone)
   */
  public Service(Options options, CheckpointManager checkpoints, Checkpoint restored, WriteGate gate) {
    this.options = options;
    this.checkpoints = checkpoints;
    this.gate = gate;
    this.restoredFrom = restored == null ? null : restored.meta();
    if (restored != null) {
      for (Checkpoint.Entry e : restored.entries()) {
        store.add(new Slot(e.name(), e.optimizer(), e.applied()));
      }
      initialized = true;
      startCheckpointing();
    }
  }

  public int index() {
    return options.index();
  }

  /**
   * Where this service reports gradients received, applied, duplicate and rejected (by reason) and
   * parameters sent; {@link Metrics#NONE} until set. May be called at any time.
   */
  public void setMetrics(Metrics metrics) {
    this.metrics = Objects.requireNonNull(metrics, "metrics");
  }

  // ---------------------------------------------------------------------------------------------
  // Initialization

  /**
   * Stores a parameter and its optimizer.
   *
   * @throws PServerException FAILED_PRECONDITION "pserver already initialized"; ALREADY_EXISTS for
   *     a name that exists (never overwritten); INVALID_ARGUMENT for a bad name, config or content;
   *     UNAVAILABLE when fenced or shutting down
   */
  public void initParam(ParameterWithConfig pwc) {
    Parameter p = pwc.param();
    checkName(p.name());
    enterWrite();
    initLock.readLock().lock();
    try {
      if (initialized) {
        throw new PServerException(Code.FAILED_PRECONDITION, Seed.ALREADY_INITIALIZED);
      }
      if (store.get(p.name()) != null) {
        throw exists(p.name());
      }
      ParameterOptimizer opt;
      try {
        opt = ParameterOptimizer.create(p.type(), p.content().duplicate(), pwc.config(), options.kernels());
      } catch (OptimizerException e) {
        throw new PServerException(Code.INVALID_ARGUMENT, "parameter " + p.name() + ": " + e.getMessage(), e);
      }
      if (!store.add(new Slot(p.name(), opt, new AppliedPushes()))) {
        throw exists(p.name());
      }
      LOG.debug("initialized parameter {} ({} x {})", p.name(), opt.elements(), p.type());
    } finally {
      initLock.readLock().unlock();
      drain.readLock().unlock();
    }
  }

  /**
   * Ends initialization. Exactly one call succeeds.
   *
   * @throws PServerException FAILED_PRECONDITION "pserver already initialized" for every later
   *     call; UNAVAILABLE when fenced or shutting down (then it did not finish)
   */
  public void finishInitParams() {
    enterWrite();
    try {
      initLock.writeLock().lock();
      try {
        if (initialized) {
          throw new PServerException(Code.FAILED_PRECONDITION, Seed.ALREADY_INITIALIZED);
        }
        initialized = true;
      } finally {
        initLock.writeLock().unlock();
      }
      wakeWaiters();
      LOG.info("pserver {}: initialization finished with {} parameters ({} bytes)", index(), store.size(), store.contentBytes());
      startCheckpointing();
    } finally {
      drain.readLock().unlock();
    }
  }

  public boolean isInitialized() {
    return initialized;
  }

  // ---------------------------------------------------------------------------------------------
  // Gradients

  /** Applies one gradient; see {@link #sendGrads}. */
  public boolean sendGrad(Gradient g, String trainerId, long seq, long low) {
    return sendGrads(List.of(g), trainerId, seq, low);
  }

  /**
   * Applies gradients, all or nothing.
   *
   * @param trainerId with {@code seq > 0}, makes the push idempotent; null or empty: no
   *     deduplication
   * @param seq the push's sequence number within the trainer (0: none)
   * @param low the trainer's low watermark: all its pushes below it are acknowledged
   * @return true if every gradient had been applied before under this (trainer, seq), so nothing
   *     was applied now
   * @throws PServerException FAILED_PRECONDITION "pserver not fully initialized"; UNAVAILABLE when
   *     fenced or shutting down; NOT_FOUND "parameter: NAME does not exist"; INVALID_ARGUMENT for a
   *     type or length mismatch (the seed's messages), NaN/Inf, an empty or repeated name. All of
   *     these mean nothing was applied, except UNAVAILABLE with "may have been applied" in its
   *     message: ownership was lost while applying, so the push was applied but is not
   *     acknowledged (retry it with the same trainer id and sequence number)
   */
  public boolean sendGrads(List<Gradient> grads, String trainerId, long seq, long low) {
    long start = System.nanoTime();
    int n = grads.size();
    Metrics m = metrics;
    long bytes = 0;
    for (Gradient g : grads) {
      bytes += g.content().remaining();
    }
    m.gradientsReceived(n, bytes);
    if (!initialized) {
      throw rejected(Rejection.UNINITIALIZED, n, new PServerException(Code.FAILED_PRECONDITION, Seed.UNINITIALIZED));
    }
    if (grads.isEmpty()) {
      throw rejected(Rejection.INVALID, n, new PServerException(Code.INVALID_ARGUMENT, "no gradient received"));
    }
    boolean dedup = trainerId != null && !trainerId.isEmpty() && seq > 0;
    try {
      enterWrite();
    } catch (PServerException e) {
      throw rejected(Rejection.UNAVAILABLE, n, e);
    }
    try {
      Slot[] slots = new Slot[n];
      Set<String> names = new HashSet<>();
      for (int i = 0; i < n; i++) {
        Gradient g = grads.get(i);
        Slot s = store.get(g.name());
        if (s == null) {
          throw rejected(Rejection.NOT_FOUND, n, new PServerException(Code.NOT_FOUND, Seed.parameterDoesNotExist(g.name())));
        }
        ParameterOptimizer opt = s.optimizer();
        if (g.type() != opt.type()) {
          throw rejected(Rejection.TYPE_MISMATCH, n,
              new PServerException(Code.INVALID_ARGUMENT, Seed.typeMismatch(g.name(), opt.type(), g.type())));
        }
        if (g.content().remaining() != opt.byteLength()) {
          throw rejected(Rejection.LENGTH_MISMATCH, n, new PServerException(
              Code.INVALID_ARGUMENT, Seed.lengthMismatch(g.name(), opt.byteLength(), g.content().remaining())));
        }
        if (!names.add(g.name())) {
          throw rejected(Rejection.INVALID, n,
              new PServerException(Code.INVALID_ARGUMENT, "gradient for " + g.name() + " appears twice in one request"));
        }
        slots[i] = s;
      }
      ByteBuffer[] data = new ByteBuffer[n];
      for (int i = 0; i < n; i++) {
        data[i] = direct(grads.get(i).content());
        if (!options.allowNonFinite()
            && !options.kernels().allFinite(grads.get(i).type(), data[i], 0, slots[i].optimizer().elements())) {
          throw rejected(Rejection.NON_FINITE, n, new PServerException(
              Code.INVALID_ARGUMENT,
              "gradient " + grads.get(i).name() + " contains NaN or infinity; nothing was applied"));
        }
      }
      long now = System.currentTimeMillis();
      int duplicates = 0;
      for (int i = 0; i < n; i++) {
        Slot s = slots[i];
        s.lock().lock();
        try {
          if (dedup && s.applied().seen(trainerId, seq, low, now)) {
            duplicates++;
            continue;
          }
          s.optimizer().update(grads.get(i).type(), data[i]);
          if (dedup) {
            s.applied().record(trainerId, seq, now);
          }
        } finally {
          s.lock().unlock();
        }
      }
      m.gradientsApplied(n - duplicates, System.nanoTime() - start);
      if (duplicates > 0) {
        m.gradientsDuplicate(duplicates);
      }
      // Applied, but do not acknowledge if ownership was lost meanwhile: the trainer retries, and
      // the retry is deduplicated wherever this update survives.
      String lost = gate.refusal();
      if (lost != null) {
        throw new PServerException(Code.UNAVAILABLE, fenced(lost).getMessage()
            + "; this push may have been applied: retry it with its trainer id and sequence number, which are deduplicated");
      }
      return duplicates == n;
    } finally {
      drain.readLock().unlock();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  /**
   * A consistent copy of a parameter, waiting (until {@code deadlineNanos}, a {@link
   * System#nanoTime()} value; {@link Long#MAX_VALUE} = no deadline) for initialization to finish.
   *
   * @throws PServerException NOT_FOUND, or while waiting: DEADLINE_EXCEEDED, CANCELLED (the thread
   *     was interrupted), UNAVAILABLE "pserver N is shutting down" ({@link #endWaits()})
   */
  public Parameter getParam(String name, long deadlineNanos) {
    return getParams(List.of(name), deadlineNanos).get(0);
  }

  /** Consistent copies of parameters in the order asked; every name is checked first. */
  public List<Parameter> getParams(List<String> names, long deadlineNanos) {
    return getParams(names, deadlineNanos, null);
  }

  /**
   * As {@link #getParams(List, long)}, and a wait for initialization also ends, with CANCELLED,
   * when {@code cancelled} completes (normally or not): a transport passes its call's cancellation,
   * so a caller that gave up does not hold a thread. Trap: a callback is added to {@code
   * cancelled} for each wait, so pass a future per call, not one that lives forever; null: never.
   */
  public List<Parameter> getParams(List<String> names, long deadlineNanos, CompletionStage<?> cancelled) {
    List<Slot> slots = slots(names, deadlineNanos, cancelled);
    List<Parameter> out = new ArrayList<>(slots.size());
    long sent = 0;
    for (Slot s : slots) {
      byte[] copy;
      s.lock().lock();
      try {
        copy = new byte[s.optimizer().byteLength()];
        s.optimizer().copyWeightsTo(ByteBuffer.wrap(copy));
      } finally {
        s.lock().unlock();
      }
      sent += copy.length;
      out.add(new Parameter(s.name(), s.optimizer().type(), ByteBuffer.wrap(copy).order(ByteOrder.LITTLE_ENDIAN)));
    }
    metrics.parametersSent(out.size(), sent);
    return out;
  }

  /**
   * The parameters in the order asked, to be read later with {@link WeightsSource#writeTo}: the
   * same checks and waiting as {@link #getParams}, but no copy yet. A transport uses it to write
   * each parameter's weights straight into its send buffers, one consistent copy each.
   */
  public List<WeightsSource> openParams(List<String> names, long deadlineNanos) {
    return openParams(names, deadlineNanos, null);
  }

  /** As {@link #openParams(List, long)}, with a cancellation as in {@link #getParams(List, long, CompletionStage)}. */
  public List<WeightsSource> openParams(List<String> names, long deadlineNanos, CompletionStage<?> cancelled) {
    List<Slot> slots = slots(names, deadlineNanos, cancelled);
    List<WeightsSource> out = new ArrayList<>(slots.size());
    long bytes = 0;
    for (Slot s : slots) {
      out.add(new WeightsSource(s));
      bytes += s.optimizer().byteLength();
    }
    metrics.parametersSent(out.size(), bytes); // counted when the reply is prepared
    return out;
  }

  private List<Slot> slots(List<String> names, long deadlineNanos, CompletionStage<?> cancelled) {
    if (names.isEmpty()) {
      return List.of();
    }
    awaitInitialized(deadlineNanos, cancelled);
    List<Slot> slots = new ArrayList<>(names.size());
    for (String name : names) {
      Slot s = store.get(name);
      if (s == null) {
        throw new PServerException(Code.NOT_FOUND, Seed.parameterDoesNotExist(name));
      }
      slots.add(s);
    }
    return slots;
  }

  private void awaitInitialized(long deadlineNanos, CompletionStage<?> cancelled) {
    if (initialized) {
      return;
    }
    AtomicBoolean gaveUp = new AtomicBoolean();
    if (cancelled != null) {
      cancelled.whenComplete((v, e) -> {
        gaveUp.set(true);
        wakeWaiters();
      });
    }
    waits.lock();
    try {
      while (!initialized) {
        if (waitsEnded) {
          throw shuttingDown();
        }
        long wait = deadlineNanos - System.nanoTime();
        if (deadlineNanos != Long.MAX_VALUE && wait <= 0) {
          throw new PServerException(Code.DEADLINE_EXCEEDED, "deadline passed waiting: " + Seed.UNINITIALIZED);
        }
        if (gaveUp.get()) {
          throw new PServerException(Code.CANCELLED, "cancelled waiting: " + Seed.UNINITIALIZED);
        }
        if (deadlineNanos == Long.MAX_VALUE) {
          waitsChanged.await();
        } else {
          waitsChanged.awaitNanos(wait);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new PServerException(Code.CANCELLED, "cancelled waiting: " + Seed.UNINITIALIZED);
    } finally {
      waits.unlock();
    }
  }

  private void wakeWaiters() {
    waits.lock();
    try {
      waitsChanged.signalAll();
    } finally {
      waits.unlock();
    }
  }

  /**
   * Ends every wait for initialization, now and from now on, with UNAVAILABLE "pserver N is
   * shutting down"; nothing else changes. A transport calls it when it stops taking calls, so a
   * read waiting without a deadline does not hold its shutdown up; {@link #shutdown()} calls it.
   */
  public void endWaits() {
    waitsEnded = true;
    wakeWaiters();
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoints and status

  /**
   * Takes a checkpoint now.
   *
   * @throws PServerException FAILED_PRECONDITION before initialization or without a checkpoint
   *     directory; UNAVAILABLE when fenced (checked before anything is written) or if the file could
   *     not be written or its metadata published (then no new file is left behind)
   */
  public CheckpointMeta checkpoint() {
    if (!initialized) {
      throw new PServerException(Code.FAILED_PRECONDITION, Seed.UNINITIALIZED);
    }
    if (checkpoints == null) {
      throw new PServerException(Code.FAILED_PRECONDITION, "checkpointing is disabled (no checkpoint path)");
    }
    refuseIfFenced();
    try {
      CheckpointMeta m = checkpoints.take(store.sorted());
      LOG.info("pserver {}: checkpoint {} ({} parameters) written to {}", index(), m.uuid(), store.size(), m.path());
      return m;
    } catch (IOException e) {
      throw new PServerException(Code.UNAVAILABLE, "checkpoint failed: " + e.getMessage(), e);
    }
  }

  /** A snapshot of this pserver's state. */
  public record Status(
      int index,
      boolean initialized,
      int parameterCount,
      long parameterBytes,
      String kernels,
      CheckpointMeta lastCheckpoint,
      boolean serving) {}

  /**
   * A snapshot; its last checkpoint is the one in effect (see {@link CheckpointManager#current()}),
   * which only moves forward even when periodic and on-demand checkpoints race.
   */
  public Status status() {
    boolean serving = !closing && gate.refusal() == null;
    return new Status(
        index(), initialized, store.size(), store.contentBytes(), options.kernels().name(), lastCheckpoint(), serving);
  }

  private CheckpointMeta lastCheckpoint() {
    CheckpointMeta m = checkpoints == null ? null : checkpoints.current();
    return m != null ? m : restoredFrom;
  }

  /** Parameter names, sorted. */
  public List<String> parameterNames() {
    List<String> names = new ArrayList<>();
    for (Slot s : store.sorted()) {
      names.add(s.name());
    }
    return names;
  }

  // ---------------------------------------------------------------------------------------------
  // Shutdown

  /**
   * Stops taking writes, ends waits for initialization ({@link #endWaits()}), waits for the writes
   * in flight, stops the periodic checkpoints and takes a final checkpoint (when initialized and
   * checkpointing). Idempotent: later calls return null.
   *
   * @return the final checkpoint, or null if none was due
   * @throws PServerException (UNAVAILABLE, "final checkpoint failed: ...") if the final checkpoint
   *     failed, e.g. fenced or the disk refused: updates acknowledged since the last checkpoint are
   *     then not on disk. The service is stopped either way; the caller must not report success
   */
  public CheckpointMeta shutdown() {
    closing = true;
    endWaits();
    drain.writeLock().lock(); // every write that got in before has finished
    try {
      ScheduledExecutorService periodic;
      synchronized (this) {
        if (stopped) {
          return null;
        }
        stopped = true;
        periodic = scheduler;
        scheduler = null;
      }
      if (periodic != null) {
        // No interrupt: a periodic checkpoint in progress finishes before the final one, and none
        // runs after it (or after this returns).
        periodic.shutdown();
        awaitQuietly(periodic);
      }
      if (initialized && checkpoints != null) {
        try {
          return checkpoint();
        } catch (PServerException e) {
          CheckpointMeta last = lastCheckpoint();
          LOG.error("pserver {}: FINAL CHECKPOINT FAILED: {}. Updates acknowledged since {} are not on disk.",
              index(), e.getMessage(), last == null ? "initialization" : "checkpoint " + last.uuid());
          throw new PServerException(e.code(), "final checkpoint failed: " + e.getMessage(), e);
        }
      }
      return null;
    } finally {
      drain.writeLock().unlock();
    }
  }

  @Override
  public void close() {
    shutdown();
  }

  private synchronized void startCheckpointing() {
    if (checkpoints == null || stopped || scheduler != null) {
      return;
    }
    long every = options.checkpointInterval().toMillis();
    if (every <= 0) {
      LOG.info("pserver {}: no periodic checkpoints (interval 0): on demand and at shutdown only", index());
      return;
    }
    scheduler =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "pserver-" + index() + "-checkpoint");
              t.setDaemon(true);
              return t;
            });
    scheduler.scheduleWithFixedDelay(this::periodicCheckpoint, every, every, TimeUnit.MILLISECONDS);
  }

  private static void awaitQuietly(ScheduledExecutorService executor) {
    try {
      while (!executor.awaitTermination(1, TimeUnit.MINUTES)) {
        LOG.warn("still waiting for a periodic checkpoint to finish before the final one");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void periodicCheckpoint() {
    if (closing) {
      return; // the final checkpoint follows
    }
    try {
      long now = System.currentTimeMillis();
      for (Slot s : store.all()) {
        s.lock().lock();
        try {
          s.applied().expire(now, options.dedupTtl().toMillis());
        } finally {
          s.lock().unlock();
        }
      }
      checkpoint();
    } catch (RuntimeException e) {
      LOG.error("pserver {}: periodic checkpoint failed: {}", index(), e.getMessage());
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  /**
   * Takes {@link #drain}'s read lock for a write, or throws UNAVAILABLE (shutting down, fenced)
   * without it. The caller unlocks.
   */
  private void enterWrite() {
    if (!drain.readLock().tryLock()) {
      throw shuttingDown();
    }
    try {
      if (closing) {
        throw shuttingDown();
      }
      refuseIfFenced();
    } catch (PServerException e) {
      drain.readLock().unlock();
      throw e;
    }
  }

  private void refuseIfFenced() {
    String why = gate.refusal();
    if (why != null) {
      throw fenced(why);
    }
  }

  private PServerException fenced(String why) {
    return new PServerException(Code.UNAVAILABLE, "pserver " + index() + " is not accepting writes: " + why);
  }

  /** Reports {@code count} gradients refused for {@code reason}; returns {@code e} to throw. */
  private PServerException rejected(Rejection reason, int count, PServerException e) {
    metrics.gradientsRejected(reason, count);
    return e;
  }

  private PServerException shuttingDown() {
    return new PServerException(Code.UNAVAILABLE, "pserver " + index() + " is shutting down");
  }

  private static PServerException exists(String name) {
    return new PServerException(Code.ALREADY_EXISTS, "parameter: " + name + " already exists");
  }

  private static void checkName(String name) {
    if (name.isEmpty()) {
      throw new PServerException(Code.INVALID_ARGUMENT, "parameter name is empty");
    }
    if (name.getBytes(StandardCharsets.UTF_8).length > 0xFFFF) {
      throw new PServerException(Code.INVALID_ARGUMENT, "parameter name is longer than 65535 bytes");
    }
  }

  /** The gradient as a direct native-order buffer: itself when it is one, else one copy. */
  private static ByteBuffer direct(ByteBuffer content) {
    ByteBuffer src = content.slice();
    if (src.isDirect()) {
      return src.order(ByteOrder.nativeOrder());
    }
    ByteBuffer d = OffHeap.allocate(src.remaining());
    d.put(src).flip();
    return d;
  }
}
