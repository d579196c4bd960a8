package org.pserver.client;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.pserver.ElementType;
import org.pserver.Seed;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.GetParamsResponse;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.SendGradsRequest;
import org.pserver.proto.SendGradsResponse;
import org.pserver.proto.StatusRequest;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A trainer's view of a pserver cluster as one reliable parameter store. The seed's {@code
 * Client}, with what it lacked: deadlines, retries, exactly-once pushes and reconnection.
 *
 * <h2>Partitioning</h2>
 *
 * Parameter {@code name} lives on pserver {@link Partitioner#partition fnv1a32(utf8(name)) mod
 * N}, as in the seed. A parameter larger than the {@linkplain Builder#blockBytes block size}
 * (1 MiB) is split into blocks spread over consecutive pservers from there, so a big layer uses
 * every pserver; blocks are invisible to callers (see {@code Blocks}). Calls with many parameters
 * are split per pserver and sent to all of them in parallel; results come back in the order asked.
 * Names may not contain {@code '#'}, which block names use.
 *
 * <h2>Request size</h2>
 *
 * What goes to one pserver is cut into requests of at most {@linkplain Builder#requestBytes 4 MiB}
 * of content (a parameter stored whole that is larger goes alone), with {@value #LANES} requests
 * in flight per pserver, so the pserver applies one while the next arrives. One huge request per
 * pserver was slower per byte the larger it got (grpc-java receives a message whole before
 * anything can use it) and failed outright past the message limit, blocks or not.
 *
 * <h2>Failures</h2>
 *
 * Every call has a per-attempt deadline. UNAVAILABLE, DEADLINE_EXCEEDED and a connection that
 * closed under the call (grpc-java reports some of those as UNKNOWN "channel closed") are retried
 * with exponential backoff (re-resolving the pserver's address each time, so a pserver that moved
 * or restarted is followed) until the attempts or the retry budget run out; then a {@link
 * PServerCallException} names the pserver. Other errors are not retried. Every call is safe to
 * retry: pushes are deduplicated (below), reads change nothing, and a repeated InitParam or
 * FinishInitParams is recognized as this client's own.
 *
 * <h2>Exactly once</h2>
 *
 * Each push to a pserver carries this client's trainer id, a sequence number and a low watermark
 * (every smaller sequence number has been acknowledged). A retry reuses the sequence number; the
 * pserver acknowledges a repeat without applying it, also across its own restart from a
 * checkpoint, which saves that record with each parameter. So a retried {@link #sendGrads} is
 * applied once by a pserver that stays up or restarts from a checkpoint. (A push acknowledged
 * after the pserver's last checkpoint is lost when it is killed: that is the price of periodic
 * checkpoints, not a retry effect.) Sequence numbers start from the clock (see {@link
 * Builder#trainerId}), so a trainer restarted with the same id is not mistaken for its
 * predecessor; a pserver that answers "duplicate" to a push this client never sent before is
 * logged as a warning.
 *
 * <h2>A pserver that came back empty</h2>
 *
 * If a pserver restarts without a checkpoint it reports "pserver not fully initialized" to
 * pushes; a read waits for initialization instead, so once a read of a pserver this client has
 * seen initialized fails, the client asks the pserver's Status before each retry (a read that
 * meets the empty pserver without failing first costs one {@linkplain Builder#callTimeout call
 * timeout}). With a {@linkplain Builder#reinitSource re-initialization source}, one trainer
 * (chosen by the {@link InitSelector}) initializes that pserver's parameters again from the
 * source, typically its latest copy, and everyone carries on; without one, calls wait and retry
 * until someone does. This is at-least-once, not exactly-once: the re-initialized pserver has no
 * record of earlier pushes, so a push whose reply was lost in the crash is applied again if the
 * source's copy already contained it, and pushes the copy missed are lost.
 *
 * <p>Thread-safe: one client per trainer process serves many threads.
 */
public final class PServerClient implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(PServerClient.class);
  private static final AtomicInteger THREADS = new AtomicInteger();
  /** The default {@linkplain Builder#requestBytes request size}: 4 MiB of content. */
  public static final long DEFAULT_REQUEST_BYTES = 4 << 20;
  /** Requests in flight per pserver within one call: one is applied while the next arrives. */
  static final int LANES = 2;
  /** The highest push sequence number any client of this JVM has used (see {@link #firstSequence}). */
  private static final AtomicLong LAST_SEQUENCE = new AtomicLong();

  private final PServerDirectory directory;
  private final InitSelector selector;
  private final String trainerId;
  private final Duration callTimeout;
  private final Duration retryBudget;
  private final int maxAttempts;
  private final Duration initialBackoff;
  private final Duration maxBackoff;
  private final Function<String, ParameterWithConfig> reinitSource;
  private final List<String> reinitNames;
  private final Connection[] connections;
  private final PushSequence[] sequences;
  private final Object[] reinitLocks;
  /** 1 for a pserver this client has seen initialized (a push, read or FinishInitParams worked). */
  private final AtomicIntegerArray seenInitialized;
  private final int blockBytes;
  private final long requestBytes;
  /** Layouts of the parameters this client has seen, by user-visible name. */
  private final Map<String, Blocks.Layout> layouts = new ConcurrentHashMap<>();
  private final ExecutorService fanOut;

  private PServerClient(Builder b) {
    this.directory = b.directory;
    this.selector = b.selector;
    this.trainerId = b.trainerId;
    this.callTimeout = b.callTimeout;
    this.retryBudget = b.retryBudget;
    this.maxAttempts = b.maxAttempts;
    this.initialBackoff = b.initialBackoff;
    this.maxBackoff = b.maxBackoff;
    this.reinitSource = b.reinitSource;
    this.reinitNames = b.reinitNames;
    this.blockBytes = b.blockBytes;
    this.requestBytes = b.requestBytes;
    int n = directory.size();
    this.connections = new Connection[n];
    this.sequences = new PushSequence[n];
    this.reinitLocks = new Object[n];
    this.seenInitialized = new AtomicIntegerArray(n);
    long first = b.firstSequence > 0 ? b.firstSequence : firstSequence();
    for (int i = 0; i < n; i++) {
      connections[i] = new Connection(i, directory, b.channelFactory);
      sequences[i] = new PushSequence(first);
      reinitLocks[i] = new Object();
    }
    directory.onChange(i -> {
      if (i >= 0 && i < n) {
        connections[i].refresh();
      }
    });
    this.fanOut =
        Executors.newCachedThreadPool(
            r -> {
              Thread t = new Thread(r, "pserver-client-" + THREADS.incrementAndGet());
              t.setDaemon(true);
              return t;
            });
  }

  /** A builder for a client of the pservers in {@code directory}. */
  public static Builder builder(PServerDirectory directory) {
    return new Builder(directory);
  }

  /**
   * Where a new client's push sequence numbers start: the microseconds since the epoch, or just
   * above the highest number a client of this JVM has used if that is larger. So the numbers of
   * a client grow past those of an earlier client with the same trainer id (a restarted trainer),
   * as the pserver's deduplication needs, unless the clock went back between the two or the
   * earlier one pushed more than a million times a second.
   */
  static long firstSequence() {
    long micros = java.time.temporal.ChronoUnit.MICROS.between(java.time.Instant.EPOCH, java.time.Instant.now());
    return LAST_SEQUENCE.updateAndGet(last -> Math.max(last + 1, micros));
  }

  /** This client's trainer id (random unless set): the identity its pushes are deduplicated by. */
  public String trainerId() {
    return trainerId;
  }

  public int pserverCount() {
    return connections.length;
  }

  /** The pserver that holds {@code name}. */
  public int partition(String name) {
    return Partitioner.partition(name, connections.length);
  }

  // ---------------------------------------------------------------------------------------------
  // Initialization

  /**
   * Whether this trainer must initialize the parameters: the selector's choice, except that when
   * every pserver is already initialized (a trainer that joined late, or restarted) the answer is
   * false and the selection is marked done.
   */
  public boolean beginInitParams() {
    boolean selected;
    try {
      selected = selector.select();
    } catch (Exception e) {
      throw new IllegalStateException("selecting the initializing trainer failed: " + e.getMessage(), e);
    }
    if (selected && allInitialized()) {
      LOG.info("every pserver is already initialized: trainer {} will not initialize", trainerId);
      try {
        selector.done();
      } catch (Exception e) {
        LOG.warn("marking initialization done failed: {}", e.toString());
      }
      return false;
    }
    return selected;
  }

  /** Stores one parameter and its optimizer config on its pserver. */
  public void initParam(ParameterWithConfig pwc) {
    initParams(List.of(pwc));
  }

  /**
   * Stores parameters on their pservers, in parallel; a parameter larger than the block size is
   * stored as blocks spread over all pservers.
   */
  public void initParams(List<ParameterWithConfig> params) {
    Map<Integer, List<ParameterWithConfig>> byServer = new java.util.TreeMap<>();
    for (ParameterWithConfig p : params) {
      Parameter whole = p.param();
      Blocks.checkName(whole.name());
      Blocks.Layout layout = Blocks.decide(whole.type(), whole.content().remaining(), blockBytes);
      layouts.put(whole.name(), layout);
      if (!layout.split()) {
        byServer.computeIfAbsent(partition(whole.name()), k -> new ArrayList<>()).add(p);
        continue;
      }
      for (Blocks.Piece piece : layout.pieces(whole.name(), connections.length)) {
        Parameter part = new Parameter(piece.serverName(), whole.type(), piece.slice(whole.content(), whole.type().size()));
        byServer.computeIfAbsent(piece.pserver(), k -> new ArrayList<>()).add(new ParameterWithConfig(part, p.config()));
      }
      if (layout.split()) {
        byServer.computeIfAbsent(partition(whole.name()), k -> new ArrayList<>()).add(layoutRecord(whole.name(), layout));
      }
    }
    List<Callable<Void>> tasks = new ArrayList<>();
    byServer.forEach((index, list) -> lanes(tasks, list, p -> initParamOn(index, p)));
    all(tasks);
  }

  private static ParameterWithConfig layoutRecord(String name, Blocks.Layout layout) {
    return new ParameterWithConfig(new Parameter(Blocks.layoutName(name), ElementType.INT64, Blocks.encode(layout)), new byte[0]);
  }

  private void initParamOn(int index, ParameterWithConfig p) {
    org.pserver.proto.ParameterWithConfig req = org.pserver.proto.ParameterWithConfig.newBuilder()
        .setParam(toProto(p.param()))
        .setConfig(ByteString.copyFrom(p.config()))
        .build();
    AtomicInteger attempt = new AtomicInteger();
    call(index, "InitParam " + p.param().name(), stub -> {
      try {
        attempt.incrementAndGet();
        return stub.initParam(req);
      } catch (StatusRuntimeException e) {
        // A retry after a lost reply finds the parameter already there: that was us.
        if (attempt.get() > 1 && e.getStatus().getCode() == Status.Code.ALREADY_EXISTS) {
          return null;
        }
        throw e;
      }
    });
  }

  /**
   * Finishes initialization on every pserver (in parallel; one that is already initialized counts
   * as done), then tells the selector. The seed's client returned on the first error without
   * telling the selector, leaving every other trainer waiting.
   */
  public void finishInitParams() {
    List<Callable<Void>> tasks = new ArrayList<>();
    for (int i = 0; i < connections.length; i++) {
      int index = i;
      tasks.add(() -> {
        finishOn(index);
        return null;
      });
    }
    all(tasks);
    try {
      selector.done();
    } catch (Exception e) {
      throw new IllegalStateException("marking initialization done failed: " + e.getMessage(), e);
    }
  }

  private void finishOn(int index) {
    call(index, "FinishInitParams", stub -> {
      try {
        return stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
      } catch (StatusRuntimeException e) {
        if (Seed.ALREADY_INITIALIZED.equals(e.getStatus().getDescription())) {
          return null;
        }
        throw e;
      }
    });
    seenInitialized.set(index, 1);
  }

  private boolean allInitialized() {
    for (int i = 0; i < connections.length; i++) {
      if (!initialized(i)) {
        return false;
      }
    }
    return true;
  }

  private boolean initialized(int index) {
    return call(index, "Status", stub -> stub.status(StatusRequest.getDefaultInstance())).getInitialized();
  }

  // ---------------------------------------------------------------------------------------------
  // Gradients and parameters

  /**
   * Applies gradients on their pservers, all in parallel, retries included each once (see
   * "Exactly once" above for a pserver that came back without a checkpoint): one push per
   * pserver, or several of at most {@linkplain Builder#requestBytes the request size}, each
   * applied all or nothing. The gradients' buffers are sent without copying and must not change until this
   * returns.
   *
   * @throws PServerCallException if a push failed for good (others may have been applied)
   * @throws IllegalArgumentException if {@code grads} is empty
   */
  public void sendGrads(List<Gradient> grads) {
    if (grads.isEmpty()) {
      throw new IllegalArgumentException("no gradient received");
    }
    Map<Integer, List<Gradient>> byServer = new java.util.TreeMap<>();
    for (Gradient g : grads) {
      Blocks.checkName(g.name());
      Blocks.Layout layout = layouts.computeIfAbsent(g.name(), n -> Blocks.decide(g.type(), g.content().remaining(), blockBytes));
      if (layout.split() && (g.type() != layout.type() || g.content().remaining() != layout.elements() * layout.type().size())) {
        throw new IllegalArgumentException("gradient " + g.name() + " has " + g.content().remaining() + " bytes of " + g.type()
            + ", its parameter " + layout.elements() + " elements of " + layout.type());
      }
      if (!layout.split()) {
        // Whole: the pserver checks type and length and answers with the seed's messages.
        byServer.computeIfAbsent(partition(g.name()), k -> new ArrayList<>()).add(g);
        continue;
      }
      for (Blocks.Piece piece : layout.pieces(g.name(), connections.length)) {
        byServer.computeIfAbsent(piece.pserver(), k -> new ArrayList<>())
            .add(new Gradient(piece.serverName(), g.type(), piece.slice(g.content(), g.type().size())));
      }
    }
    List<Callable<Void>> tasks = new ArrayList<>();
    byServer.forEach((index, list) ->
        lanes(tasks, batches(list, g -> g.content().remaining(), requestBytes), batch -> push(index, batch)));
    all(tasks);
  }

  private void push(int index, List<Gradient> grads) {
    PushSequence seqs = sequences[index];
    long seq = seqs.begin();
    try {
      SendGradsRequest.Builder b =
          SendGradsRequest.newBuilder().setTrainerId(trainerId).setSeq(seq).setLowWatermark(seqs.low());
      for (Gradient g : grads) {
        b.addGrads(org.pserver.proto.Gradient.newBuilder()
            .setName(g.name())
            .setElementTypeValue(g.type().code())
            .setContent(UnsafeByteOperations.unsafeWrap(g.content().slice())));
      }
      SendGradsRequest req = b.build();
      AtomicInteger sent = new AtomicInteger();
      SendGradsResponse reply = call(index, "SendGrads", stub -> {
        sent.incrementAndGet();
        return stub.sendGrads(req);
      });
      seenInitialized.set(index, 1);
      if (reply.getDuplicate() && sent.get() == 1) {
        // A retry may legitimately be a duplicate; a first attempt never is.
        LOG.warn("pserver {} answered that push {} of trainer {} was applied before, but this client had never sent it: "
            + "its gradients were NOT applied. Is another client using trainer id {}, or did the clock go back?",
            index, seq, trainerId, trainerId);
      }
    } finally {
      seqs.end(seq);
    }
  }

  /**
   * Consistent copies of parameters, in the order asked, fetched from all pservers in parallel. A
   * parameter stored whole comes back as a read-only view of the received message (no copy); one
   * stored in blocks is assembled into one buffer (one copy). Each block is a consistent copy;
   * blocks of one parameter may be from slightly different moments (as with any asynchronous
   * SGD read of several parameters). Asking for nothing returns nothing (the seed's client hung).
   */
  public List<Parameter> getParams(List<String> names) {
    if (names.isEmpty()) {
      return List.of();
    }
    Parameter[] out = new Parameter[names.size()];
    resolveLayouts(names, out);
    // Every piece still missing, grouped by pserver: (position in `names`, piece).
    Map<Integer, List<Object[]>> byServer = new java.util.TreeMap<>();
    for (int i = 0; i < names.size(); i++) {
      if (out[i] != null) {
        continue;
      }
      for (Blocks.Piece piece : layouts.get(names.get(i)).pieces(names.get(i), connections.length)) {
        byServer.computeIfAbsent(piece.pserver(), k -> new ArrayList<>()).add(new Object[] {i, piece});
      }
    }
    ByteBuffer[] assembled = new ByteBuffer[names.size()];
    for (int i = 0; i < names.size(); i++) {
      Blocks.Layout l = layouts.get(names.get(i));
      if (out[i] == null && l.split()) {
        assembled[i] = ByteBuffer.allocate(l.elements() * l.type().size()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
      }
    }
    List<Callable<Void>> tasks = new ArrayList<>();
    byServer.forEach((index, pieces) -> lanes(tasks, batches(pieces, w -> pieceBytes(names.get((Integer) w[0]), (Blocks.Piece) w[1]), requestBytes), wanted -> {
      GetParamsRequest.Builder req = GetParamsRequest.newBuilder();
      for (Object[] w : wanted) {
        req.addNames(((Blocks.Piece) w[1]).serverName());
      }
      GetParamsRequest r = req.build();
      GetParamsResponse resp = read(index, stub -> stub.getParams(r));
      if (resp.getParamsCount() != wanted.size()) {
        throw new IllegalStateException("pserver " + index + " returned " + resp.getParamsCount() + " parameters for " + wanted.size() + " names");
      }
      for (int k = 0; k < wanted.size(); k++) {
        int pos = (Integer) wanted.get(k)[0];
        Blocks.Piece piece = (Blocks.Piece) wanted.get(k)[1];
        org.pserver.proto.Parameter p = resp.getParams(k);
        ElementType type = ElementType.fromCode(p.getElementTypeValue());
        if (assembled[pos] == null) {
          out[pos] = new Parameter(names.get(pos), type, p.getContent().asReadOnlyByteBuffer());
        } else {
          p.getContent().copyTo(assembled[pos].slice(piece.offset() * type.size(), piece.count() * type.size()));
        }
      }
    }));
    all(tasks);
    for (int i = 0; i < names.size(); i++) {
      if (assembled[i] != null) {
        Blocks.Layout l = layouts.get(names.get(i));
        out[i] = new Parameter(names.get(i), l.type(), assembled[i].asReadOnlyBuffer().order(java.nio.ByteOrder.LITTLE_ENDIAN));
      }
    }
    return List.of(out);
  }

  /**
   * Learns the layout of names not seen before: asks the hash pserver for the parameter itself
   * (the common, whole case: its content is kept as the answer) and, if it is not there, for its
   * block layout record.
   */
  private void resolveLayouts(List<String> names, Parameter[] out) {
    List<Callable<Void>> probes = new ArrayList<>();
    java.util.Set<String> probing = new java.util.HashSet<>();
    for (int i = 0; i < names.size(); i++) {
      String name = names.get(i);
      Blocks.checkName(name);
      if (layouts.containsKey(name) || !probing.add(name)) {
        continue;
      }
      probes.add(() -> {
        int home = partition(name);
        try {
          org.pserver.proto.Parameter p = read(home, stub ->
              stub.getParams(GetParamsRequest.newBuilder().addNames(name).build())).getParams(0);
          ElementType type = ElementType.fromCode(p.getElementTypeValue());
          layouts.putIfAbsent(name, new Blocks.Layout(type, p.getContent().size() / type.size(), p.getContent().size() / type.size()));
          Parameter whole = new Parameter(name, type, p.getContent().asReadOnlyByteBuffer());
          for (int k = 0; k < names.size(); k++) {
            if (names.get(k).equals(name)) {
              out[k] = whole;
            }
          }
        } catch (PServerCallException e) {
          if (e.status().getCode() != Status.Code.NOT_FOUND) {
            throw e;
          }
          org.pserver.proto.Parameter rec = read(home, stub ->
              stub.getParams(GetParamsRequest.newBuilder().addNames(Blocks.layoutName(name)).build())).getParams(0);
          layouts.putIfAbsent(name, Blocks.decode(name, rec.getContent().asReadOnlyByteBuffer()));
        }
        return null;
      });
    }
    if (!probes.isEmpty()) {
      try {
        all(probes);
      } catch (PServerCallException e) {
        if (e.status().getCode() == Status.Code.NOT_FOUND) {
          throw new PServerCallException(e.index(), e.address(), "GetParams", 1, 0,
              Status.NOT_FOUND.withDescription("parameter: " + names + " (or one of them) does not exist"), e);
        }
        throw e;
      }
    }
  }

  /** One parameter; see {@link #getParams}. */
  public Parameter getParam(String name) {
    return getParams(List.of(name)).get(0);
  }

  // ---------------------------------------------------------------------------------------------
  // Calls, retries and re-initialization

  @FunctionalInterface
  private interface Rpc<T> {
    T call(PServerGrpc.PServerBlockingStub stub);
  }

  private <T> T call(int index, String operation, Rpc<T> rpc) {
    return call(index, operation, false, rpc);
  }

  /** A GetParams call: the pserver waits for initialization within the deadline. */
  private <T> T read(int index, Rpc<T> rpc) {
    T out = call(index, "GetParams", true, rpc);
    seenInitialized.set(index, 1);
    return out;
  }

  private <T> T call(int index, String operation, boolean read, Rpc<T> rpc) {
    long start = System.nanoTime();
    long budgetEnd = start + retryBudget.toNanos();
    Connection c = connections[index];
    boolean suspect = false;
    for (int attempt = 1; ; attempt++) {
      // A read of a pserver that came back empty would wait for initialization until its
      // deadline, and the pserver's "not fully initialized" rarely beats the client's own
      // deadline error. So once a read failed (the pserver went away, or held the read that
      // long), ask its Status before each new attempt.
      if (suspect && answersUninitialized(index)) {
        reinitialize(index);
      }
      try {
        return rpc.call(c.stub().withDeadlineAfter(callTimeout.toMillis(), TimeUnit.MILLISECONDS));
      } catch (StatusRuntimeException e) {
        Status s = e.getStatus();
        boolean uninitialized = isUninitialized(s);
        boolean transport = s.getCode() == Status.Code.UNAVAILABLE
            || s.getCode() == Status.Code.DEADLINE_EXCEEDED
            || isChannelClosed(s);
        long now = System.nanoTime();
        if (!(uninitialized || transport) || attempt >= maxAttempts || now >= budgetEnd) {
          throw new PServerCallException(index, c.address(), operation, attempt, (now - start) / 1_000_000, s, e);
        }
        if (uninitialized) {
          reinitialize(index);
        }
        suspect = read && transport;
        LOG.debug("pserver {}: {} attempt {} failed ({}); retrying", index, operation, attempt, s.getCode());
        c.resetBackoff();
        sleep(backoff(attempt), budgetEnd);
      }
    }
  }

  /**
   * grpc-java's status for a call whose connection was already closed when it was written, with
   * no cause recorded (a pserver killed under the call): UNKNOWN "channel closed" with a {@link
   * java.nio.channels.ClosedChannelException}, where a reset connection gives UNAVAILABLE.
   */
  static boolean isChannelClosed(Status s) {
    return s.getCode() == Status.Code.UNKNOWN && s.getCause() instanceof java.nio.channels.ClosedChannelException;
  }

  /**
   * One Status call, not retried, if re-initialization is possible and this client has seen the
   * pserver initialized: true only if the pserver answers that it is not initialized (it came
   * back empty).
   */
  private boolean answersUninitialized(int index) {
    if (reinitSource == null || seenInitialized.get(index) == 0) {
      return false;
    }
    try {
      long ms = Math.min(callTimeout.toMillis(), 5_000);
      return !connections[index].stub().withDeadlineAfter(ms, TimeUnit.MILLISECONDS)
          .status(StatusRequest.getDefaultInstance()).getInitialized();
    } catch (StatusRuntimeException e) {
      return false;
    }
  }

  private static boolean isUninitialized(Status s) {
    String d = s.getDescription();
    return d != null
        && d.contains(Seed.UNINITIALIZED)
        && (s.getCode() == Status.Code.FAILED_PRECONDITION || s.getCode() == Status.Code.DEADLINE_EXCEEDED);
  }

  /** Re-initializes pserver {@code index} from the source if this trainer is the one to do it. */
  private void reinitialize(int index) {
    if (reinitSource == null) {
      return;
    }
    synchronized (reinitLocks[index]) {
      boolean mine;
      try {
        mine = selector.selectFor(() -> !initialized(index));
      } catch (Exception e) {
        LOG.warn("pserver {}: choosing who re-initializes it failed: {}", index, e.toString());
        return;
      }
      if (!mine) {
        return;
      }
      try {
        // Every parameter of the job, not just those this client has touched: a pserver that is
        // initialized with part of its parameters would be stuck with NOT_FOUND for the rest.
        List<ParameterWithConfig> wholes = new ArrayList<>();
        for (String name : reinitNames) {
          ParameterWithConfig whole = reinitSource.apply(name);
          if (whole == null) {
            LOG.info("pserver {} came back empty, but trainer {} has no copy of {} yet: leaving it to another trainer", index, trainerId, name);
            return;
          }
          wholes.add(whole);
        }
        int count = 0;
        for (ParameterWithConfig whole : wholes) {
          String name = whole.param().name();
          Blocks.Layout layout = layouts.computeIfAbsent(name,
              n -> Blocks.decide(whole.param().type(), whole.param().content().remaining(), blockBytes));
          for (Blocks.Piece piece : layout.pieces(name, connections.length)) {
            if (piece.pserver() == index) {
              Parameter part = layout.split()
                  ? new Parameter(piece.serverName(), whole.param().type(), piece.slice(whole.param().content(), whole.param().type().size()))
                  : whole.param();
              initParamOn(index, new ParameterWithConfig(part, whole.config()));
              count++;
            }
          }
          if (layout.split() && partition(name) == index) {
            initParamOn(index, layoutRecord(name, layout));
          }
        }
        finishOn(index);
        LOG.warn("pserver {} came back empty: trainer {} re-initialized its {} parameters", index, trainerId, count);
      } finally {
        selector.release();
      }
    }
  }

  private long backoff(int attempt) {
    double ms = initialBackoff.toMillis() * Math.pow(2, Math.min(attempt - 1, 20));
    ms = Math.min(ms, maxBackoff.toMillis());
    return (long) (ms * (0.5 + 0.5 * java.util.concurrent.ThreadLocalRandom.current().nextDouble()));
  }

  private static void sleep(long millis, long budgetEndNanos) {
    long left = (budgetEndNanos - System.nanoTime()) / 1_000_000;
    try {
      Thread.sleep(Math.max(0, Math.min(millis, left)));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while retrying", e);
    }
  }

  private long pieceBytes(String name, Blocks.Piece piece) {
    return (long) piece.count() * layouts.get(name).type().size();
  }

  /**
   * Cuts one pserver's items into consecutive batches of at most {@code limit} bytes each; an item
   * larger than the limit makes a batch of its own.
   */
  static <T> List<List<T>> batches(List<T> items, java.util.function.ToLongFunction<T> bytes, long limit) {
    List<List<T>> out = new ArrayList<>();
    List<T> current = new ArrayList<>();
    long size = 0;
    for (T item : items) {
      long b = bytes.applyAsLong(item);
      if (!current.isEmpty() && size + b > limit) {
        out.add(current);
        current = new ArrayList<>();
        size = 0;
      }
      current.add(item);
      size += b;
    }
    if (!current.isEmpty()) {
      out.add(current);
    }
    return out;
  }

  /**
   * Adds tasks that do {@code work} for every item of one pserver, {@value #LANES} at a time: lane
   * k takes items k, k + LANES, ... one after another.
   */
  private static <T> void lanes(List<Callable<Void>> tasks, List<T> items, java.util.function.Consumer<T> work) {
    int lanes = Math.min(LANES, items.size());
    for (int k = 0; k < lanes; k++) {
      int first = k;
      tasks.add(() -> {
        for (int i = first; i < items.size(); i += lanes) {
          work.accept(items.get(i));
        }
        return null;
      });
    }
  }

  /** Runs the tasks in parallel (the last one on the calling thread) and rethrows the first failure. */
  private void all(List<Callable<Void>> tasks) {
    if (tasks.isEmpty()) {
      return;
    }
    if (tasks.size() == 1) {
      try {
        tasks.get(0).call();
        return;
      } catch (RuntimeException e) {
        throw e;
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }
    List<Future<Void>> futures = new ArrayList<>();
    for (int i = 0; i < tasks.size() - 1; i++) {
      futures.add(fanOut.submit(tasks.get(i)));
    }
    RuntimeException failure = null;
    try {
      tasks.get(tasks.size() - 1).call();
    } catch (RuntimeException e) {
      failure = e;
    } catch (Exception e) {
      failure = new IllegalStateException(e);
    }
    for (Future<Void> f : futures) {
      try {
        f.get();
      } catch (ExecutionException e) {
        if (failure == null) {
          failure = e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        failure = new IllegalStateException("interrupted", e);
      }
    }
    if (failure != null) {
      throw failure;
    }
  }

  private static org.pserver.proto.Parameter toProto(Parameter p) {
    ByteBuffer c = p.content().slice();
    return org.pserver.proto.Parameter.newBuilder()
        .setName(p.name())
        .setElementTypeValue(p.type().code())
        .setContent(UnsafeByteOperations.unsafeWrap(c))
        .build();
  }

  @Override
  public void close() {
    fanOut.shutdownNow();
    for (Connection c : connections) {
      c.close();
    }
    selector.close();
    directory.close();
  }

  // ---------------------------------------------------------------------------------------------

  /** Sequence numbers of pushes to one pserver and the ones still in flight. */
  private static final class PushSequence {
    private long next;
    private final java.util.TreeSet<Long> inFlight = new java.util.TreeSet<>();

    PushSequence(long first) {
      this.next = first;
    }

    synchronized long begin() {
      long s = next++;
      inFlight.add(s);
      LAST_SEQUENCE.accumulateAndGet(s, Math::max);
      return s;
    }

    /** Every sequence number below this has been acknowledged (or given up). */
    synchronized long low() {
      return inFlight.isEmpty() ? next : inFlight.first();
    }

    synchronized void end(long s) {
      inFlight.remove(s);
    }
  }

  /** The channel to one pserver, rebuilt when its address changes. */
  private static final class Connection {
    private final int index;
    private final PServerDirectory directory;
    private final Function<String, ManagedChannel> factory;
    private String address;
    private ManagedChannel channel;
    private PServerGrpc.PServerBlockingStub stub;

    Connection(int index, PServerDirectory directory, Function<String, ManagedChannel> factory) {
      this.index = index;
      this.directory = directory;
      this.factory = factory;
    }

    synchronized PServerGrpc.PServerBlockingStub stub() {
      String now = directory.address(index);
      if (now == null) {
        throw Status.UNAVAILABLE.withDescription("address of pserver " + index + " is unknown").asRuntimeException();
      }
      if (!now.equals(address)) {
        if (channel != null) {
          channel.shutdown();
        }
        address = now;
        channel = factory.apply(now);
        stub = PServerGrpc.newBlockingStub(channel);
      }
      return stub;
    }

    synchronized String address() {
      return address != null ? address : directory.address(index);
    }

    synchronized void refresh() {
      String now = directory.address(index);
      if (channel != null && !Objects.equals(now, address)) {
        LOG.info("pserver {} moved: {} -> {}", index, address, now);
      }
    }

    synchronized void resetBackoff() {
      if (channel != null) {
        channel.resetConnectBackoff();
      }
    }

    synchronized void close() {
      if (channel != null) {
        channel.shutdownNow();
      }
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** Settings of a {@link PServerClient}; every one has a sensible default. */
  public static final class Builder {
    private final PServerDirectory directory;
    private InitSelector selector = InitSelector.fixed(false);
    private String trainerId = UUID.randomUUID().toString();
    private Duration callTimeout = Duration.ofSeconds(30);
    private Duration retryBudget = Duration.ofSeconds(120);
    private int maxAttempts = 100;
    private Duration initialBackoff = Duration.ofMillis(50);
    private Duration maxBackoff = Duration.ofSeconds(2);
    private int maxMessageBytes = 512 << 20;
    private Function<String, ManagedChannel> channelFactory;
    private Function<String, ParameterWithConfig> reinitSource;
    private List<String> reinitNames = List.of();
    private int blockBytes = 1 << 20;
    private long requestBytes = DEFAULT_REQUEST_BYTES;
    private long firstSequence;

    private Builder(PServerDirectory directory) {
      this.directory = Objects.requireNonNull(directory, "directory");
    }

    /** Who initializes the parameters (default: not this trainer). */
    public Builder selector(InitSelector s) {
      this.selector = Objects.requireNonNull(s);
      return this;
    }

    /**
     * Overrides the random trainer id; two live clients must never share one. A trainer that
     * restarts may keep its id: each client numbers its pushes from the microseconds since the
     * epoch at its creation, so the new client's numbers are above those its predecessor used
     * (as long as the clock does not go back between the two) and its pushes are applied, not
     * taken for repeats.
     */
    public Builder trainerId(String id) {
      if (id == null || id.isEmpty()) {
        throw new IllegalArgumentException("empty trainer id");
      }
      this.trainerId = id;
      return this;
    }

    /** Deadline of each attempt (default 30 s). */
    public Builder callTimeout(Duration d) {
      this.callTimeout = positive(d, "callTimeout");
      return this;
    }

    /** Longest time a call keeps retrying before it fails (default 120 s). */
    public Builder retryBudget(Duration d) {
      this.retryBudget = positive(d, "retryBudget");
      return this;
    }

    /** Most attempts per call (default 100). */
    public Builder maxAttempts(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxAttempts must be >= 1");
      }
      this.maxAttempts = n;
      return this;
    }

    /** Exponential backoff between attempts, with jitter (default 50 ms doubling to 2 s). */
    public Builder backoff(Duration initial, Duration max) {
      this.initialBackoff = positive(initial, "initial backoff");
      this.maxBackoff = positive(max, "max backoff");
      return this;
    }

    /** Largest message accepted (default 512 MiB, as the pserver's default). */
    public Builder maxMessageBytes(int n) {
      this.maxMessageBytes = n;
      return this;
    }

    /** How to open a channel to an address (TLS, tokens, interceptors); default plaintext. */
    public Builder channelFactory(Function<String, ManagedChannel> f) {
      this.channelFactory = f;
      return this;
    }

    /**
     * How to re-initialize the parameters of a pserver that comes back empty: {@code names} is
     * every parameter of the job, and {@code source} gives a name's current value and config
     * (typically this trainer's latest copy), or null if this trainer has no copy yet (another
     * trainer then does it). Without it such a pserver is left for another trainer to handle.
     * Re-initialized parameters are the source's copy: pushes it lacks are lost, and a push in
     * flight during the crash that it already contains may be applied again (at-least-once).
     */
    public Builder reinitSource(java.util.Collection<String> names, Function<String, ParameterWithConfig> source) {
      this.reinitNames = List.copyOf(names);
      this.reinitSource = Objects.requireNonNull(source, "source");
      return this;
    }

    /**
     * Parameters larger than this are stored as blocks spread over all pservers (default 1 MiB;
     * 0: never split). Every trainer of a job must use the same value.
     */
    public Builder blockBytes(int bytes) {
      if (bytes < 0) {
        throw new IllegalArgumentException("blockBytes must be >= 0");
      }
      this.blockBytes = bytes;
      return this;
    }

    /**
     * The most content bytes in one request to a pserver, or in the reply to one (default 4 MiB):
     * larger pushes and reads are cut into several requests, {@value PServerClient#LANES} in
     * flight per pserver. A parameter stored whole that is larger is sent alone. Keep it well
     * below the message limits of client and pservers.
     */
    public Builder requestBytes(long bytes) {
      if (bytes < 1) {
        throw new IllegalArgumentException("requestBytes must be >= 1");
      }
      this.requestBytes = bytes;
      return this;
    }

    /** Tests: the first push sequence number instead of the clock's (e.g. a clock that went back). */
    Builder firstSequence(long first) {
      if (first < 1) {
        throw new IllegalArgumentException("firstSequence must be >= 1");
      }
      this.firstSequence = first;
      return this;
    }

    public PServerClient build() {
      if (channelFactory == null) {
        int max = maxMessageBytes;
        channelFactory = address -> NettyChannelBuilder.forTarget(address)
            .usePlaintext()
            .maxInboundMessageSize(max)
            .keepAliveTime(30, TimeUnit.SECONDS)
            .build();
      }
      return new PServerClient(this);
    }

    private static Duration positive(Duration d, String what) {
      if (d == null || d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException(what + " must be > 0");
      }
      return d;
    }
  }
}
