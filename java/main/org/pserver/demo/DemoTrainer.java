package org.pserver.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BooleanSupplier;
import org.pserver.ElementType;
import org.pserver.client.PServerClient;
import org.pserver.kernels.OffHeap;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;

/**
 * One asynchronous-SGD trainer: pull the parameters, compute the gradient of a batch, push it;
 * repeat until told to stop. Its latest copy of the parameters is also what it offers to
 * re-initialize a pserver that came back empty.
 */
public final class DemoTrainer implements Runnable {
  private final int id;
  private final PServerClient client;
  private final TeacherTask task;
  private final Mlp model;
  private final int batch;
  private final BooleanSupplier stop;
  private final DemoStats stats;
  private final byte[] config;
  private final ByteBuffer[] gradBuffers = new ByteBuffer[6];
  private volatile Throwable failure;

  public DemoTrainer(int id, PServerClient client, TeacherTask task, Mlp model, int batch, byte[] config, BooleanSupplier stop, DemoStats stats) {
    this.id = id;
    this.client = client;
    this.task = task;
    this.model = model;
    this.batch = batch;
    this.config = config;
    this.stop = stop;
    this.stats = stats;
    for (int k = 0; k < 6; k++) {
      gradBuffers[k] = OffHeap.allocate(4 * model.params[k].length).order(ByteOrder.LITTLE_ENDIAN);
    }
  }

  /** The initializing trainer's job: random weights, stored on the pservers. */
  public void initializeParameters(long seed) {
    model.initialize(seed);
    haveCopy = true;
    List<ParameterWithConfig> params = new ArrayList<>();
    for (int k = 0; k < 6; k++) {
      params.add(current(Mlp.NAMES.get(k)));
    }
    client.initParams(params);
    client.finishInitParams();
  }

  private volatile boolean haveCopy;

  /**
   * This trainer's latest copy of one parameter, with its optimizer config; null before it has
   * pulled or initialized the parameters (its zeros must not re-initialize anything).
   */
  public synchronized ParameterWithConfig current(String name) {
    if (!haveCopy) {
      return null;
    }
    int k = Mlp.NAMES.indexOf(name);
    float[] p = model.params[k];
    ByteBuffer b = ByteBuffer.allocate(4 * p.length).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(p);
    return new ParameterWithConfig(new Parameter(name, ElementType.FLOAT32, b), config);
  }

  /**
   * Fetches the parameters, then copies them into the model under the lock. The fetch must not
   * hold it: re-initializing a pserver that came back empty during the fetch calls {@link
   * #current} from one of the client's threads, which would wait for the lock forever.
   */
  private void pull() {
    List<Parameter> ps = client.getParams(Mlp.NAMES);
    synchronized (this) {
      for (int k = 0; k < 6; k++) {
        FloatBuffer f = ps.get(k).content().duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        f.get(model.params[k]);
      }
      haveCopy = true;
    }
  }

  @Override
  public void run() {
    SplittableRandom r = new SplittableRandom(1000 + id);
    float[][] xs = new float[batch][task.in];
    int[] ys = new int[batch];
    try {
      while (!stop.getAsBoolean()) {
        long t0 = System.nanoTime();
        pull();
        long t1 = System.nanoTime();
        for (int s = 0; s < batch; s++) {
          ys[s] = task.sample(r, xs[s]);
        }
        double loss;
        synchronized (this) {
          loss = model.backprop(xs, ys);
        }
        List<Gradient> grads = new ArrayList<>(6);
        float[][] g = model.gradients();
        long bytes = 0;
        for (int k = 0; k < 6; k++) {
          ByteBuffer b = gradBuffers[k];
          b.clear();
          b.asFloatBuffer().put(g[k]);
          grads.add(new Gradient(Mlp.NAMES.get(k), ElementType.FLOAT32, b));
          bytes += b.capacity();
        }
        long t2 = System.nanoTime();
        client.sendGrads(grads);
        long t3 = System.nanoTime();
        stats.update(loss, 2 * bytes, t1 - t0, t2 - t1, t3 - t2);
      }
    } catch (Throwable t) {
      failure = t;
      stats.fail(id, t);
    }
  }

  /** What stopped this trainer, or null. */
  public Throwable failure() {
    return failure;
  }
}
