package org.pserver.demo;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A small multi-layer perceptron for the demo: {@code in -> tanh(hidden1) -> tanh(hidden2) ->
 * softmax(classes)}, trained with cross-entropy. Its parameters are six named float tensors
 * ({@code fc1.w, fc1.b, fc2.w, fc2.b, fc3.w, fc3.b}), which is what the pservers store.
 *
 * <p>Weights are stored input-major ({@code w[i * out + j]} connects input i to output j), so the
 * forward pass and the weight gradients are loops of {@code y[j] += a * w[i*out + j]} over j, which
 * C2 vectorizes. Not thread-safe: each trainer has its own instance.
 */
public final class Mlp {
  /** The layer sizes: input, hidden, hidden, classes. */
  public final int in;
  public final int h1;
  public final int h2;
  public final int classes;

  /** Parameter tensors, in {@link #NAMES} order. */
  public final float[][] params;

  public static final List<String> NAMES = List.of("fc1.w", "fc1.b", "fc2.w", "fc2.b", "fc3.w", "fc3.b");

  private final float[][] grads;
  // Batch activations and deltas ([sample][unit]), reused; wT is a transposed weight scratch.
  private float[][] a1;
  private float[][] a2;
  private float[][] z3;
  private float[][] d1;
  private float[][] d2;
  private float[] wT;

  public Mlp(int in, int h1, int h2, int classes) {
    this.in = in;
    this.h1 = h1;
    this.h2 = h2;
    this.classes = classes;
    int[] sizes = {in * h1, h1, h1 * h2, h2, h2 * classes, classes};
    params = new float[6][];
    grads = new float[6][];
    for (int k = 0; k < 6; k++) {
      params[k] = new float[sizes[k]];
      grads[k] = new float[sizes[k]];
    }
    wT = new float[Math.max(in * h1, Math.max(h1 * h2, h2 * classes))];
    ensureBatch(1);
  }

  private void ensureBatch(int n) {
    if (a1 == null || a1.length < n) {
      a1 = new float[n][h1];
      a2 = new float[n][h2];
      z3 = new float[n][classes];
      d1 = new float[n][h1];
      d2 = new float[n][h2];
    }
  }

  /** Total number of parameters. */
  public long size() {
    long n = 0;
    for (float[] p : params) {
      n += p.length;
    }
    return n;
  }

  /** Glorot-style random weights, zero biases. */
  public void initialize(long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    fill(params[0], r, Math.sqrt(6.0 / (in + h1)));
    fill(params[2], r, Math.sqrt(6.0 / (h1 + h2)));
    fill(params[4], r, Math.sqrt(6.0 / (h2 + classes)));
  }

  private static void fill(float[] w, SplittableRandom r, double scale) {
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) ((r.nextDouble() * 2 - 1) * scale);
    }
  }

  /**
   * Y[s] = b + X[s] * W for the first {@code n} samples (W input-major, nIn x nOut). Row i of W is
   * loaded once and used for every sample.
   */
  private static void affine(float[][] x, int n, int nIn, float[] w, float[] b, float[][] y, int nOut) {
    for (int s = 0; s < n; s++) {
      System.arraycopy(b, 0, y[s], 0, nOut);
    }
    for (int i = 0; i < nIn; i++) {
      int row = i * nOut;
      for (int s = 0; s < n; s++) {
        float xi = x[s][i];
        if (xi == 0) {
          continue;
        }
        float[] ys = y[s];
        for (int j = 0; j < nOut; j++) {
          ys[j] += xi * w[row + j];
        }
      }
    }
  }

  private static void tanh(float[][] v, int n) {
    for (int s = 0; s < n; s++) {
      float[] r = v[s];
      for (int i = 0; i < r.length; i++) {
        r[i] = (float) Math.tanh(r[i]);
      }
    }
  }

  /** The predicted class of {@code x}. */
  public int predict(float[] x) {
    forward(new float[][] {x}, 1);
    float[] z = z3[0];
    int best = 0;
    for (int c = 1; c < classes; c++) {
      if (z[c] > z[best]) {
        best = c;
      }
    }
    return best;
  }

  private void forward(float[][] x, int n) {
    ensureBatch(n);
    affine(x, n, in, params[0], params[1], a1, h1);
    tanh(a1, n);
    affine(a1, n, h1, params[2], params[3], a2, h2);
    tanh(a2, n);
    affine(a2, n, h2, params[4], params[5], z3, classes);
  }

  /**
   * Computes the mean cross-entropy gradient of a batch into {@link #gradients()} and returns the
   * mean loss.
   */
  public double backprop(float[][] xs, int[] labels) {
    int n = xs.length;
    for (float[] g : grads) {
      java.util.Arrays.fill(g, 0f);
    }
    forward(xs, n);
    double loss = 0;
    float scale = 1f / n;
    float[][] d3 = z3; // softmax(z) - onehot(label), scaled, in place
    for (int s = 0; s < n; s++) {
      float[] z = d3[s];
      float max = z[0];
      for (int c = 1; c < classes; c++) {
        max = Math.max(max, z[c]);
      }
      double sum = 0;
      for (int c = 0; c < classes; c++) {
        z[c] = (float) Math.exp(z[c] - max);
        sum += z[c];
      }
      for (int c = 0; c < classes; c++) {
        z[c] = (float) (z[c] / sum);
      }
      loss -= Math.log(Math.max(z[labels[s]], 1e-12));
      z[labels[s]] -= 1;
      for (int c = 0; c < classes; c++) {
        z[c] *= scale;
      }
    }
    outer(a2, n, h2, d3, classes, grads[4]);
    sumRows(d3, n, grads[5]);
    backDelta(params[4], d3, n, classes, a2, h2, d2);
    outer(a1, n, h1, d2, h2, grads[2]);
    sumRows(d2, n, grads[3]);
    backDelta(params[2], d2, n, h2, a1, h1, d1);
    outer(xs, n, in, d1, h1, grads[0]);
    sumRows(d1, n, grads[1]);
    return loss / n;
  }

  /** G[i*out + j] += sum_s A[s][i] * D[s][j]; row i of G stays in cache across the samples. */
  private static void outer(float[][] a, int n, int nIn, float[][] d, int nOut, float[] g) {
    for (int i = 0; i < nIn; i++) {
      int row = i * nOut;
      for (int s = 0; s < n; s++) {
        float ai = a[s][i];
        if (ai == 0) {
          continue;
        }
        float[] ds = d[s];
        for (int j = 0; j < nOut; j++) {
          g[row + j] += ai * ds[j];
        }
      }
    }
  }

  private static void sumRows(float[][] d, int n, float[] g) {
    for (int s = 0; s < n; s++) {
      float[] ds = d[s];
      for (int j = 0; j < g.length; j++) {
        g[j] += ds[j];
      }
    }
  }

  /**
   * P[s][i] = (1 - act[s][i]^2) * sum_j W[i][j] * D[s][j]: the delta of a tanh layer. W is
   * transposed once so the sum becomes axpys over i, which vectorize (a dot product would not).
   */
  private void backDelta(float[] w, float[][] d, int n, int nOut, float[][] act, int nIn, float[][] prev) {
    float[] t = wT;
    for (int i = 0; i < nIn; i++) {
      for (int j = 0; j < nOut; j++) {
        t[j * nIn + i] = w[i * nOut + j];
      }
    }
    for (int s = 0; s < n; s++) {
      java.util.Arrays.fill(prev[s], 0, nIn, 0f);
    }
    for (int j = 0; j < nOut; j++) {
      int row = j * nIn;
      for (int s = 0; s < n; s++) {
        float dj = d[s][j];
        if (dj == 0) {
          continue;
        }
        float[] ps = prev[s];
        for (int i = 0; i < nIn; i++) {
          ps[i] += dj * t[row + i];
        }
      }
    }
    for (int s = 0; s < n; s++) {
      float[] ps = prev[s];
      float[] as = act[s];
      for (int i = 0; i < nIn; i++) {
        ps[i] *= 1 - as[i] * as[i];
      }
    }
  }

  /** The gradient tensors of the last {@link #backprop}, in {@link #NAMES} order. */
  public float[][] gradients() {
    return grads;
  }

  /** Parameter names with their sizes, for logs. */
  public List<String> describe() {
    List<String> out = new ArrayList<>();
    for (int k = 0; k < 6; k++) {
      out.add(NAMES.get(k) + "[" + params[k].length + "]");
    }
    return out;
  }
}
