package org.pserver.demo;

import java.util.SplittableRandom;

/**
 * The demo's dataset, with a known answer: inputs are standard normal vectors, and the label of
 * each is what a fixed random "teacher" network ({@code in -> tanh(width) -> classes}) predicts
 * for it. A student trained on enough samples should agree with the teacher on unseen inputs;
 * chance is {@code 1 / classes}.
 */
public final class TeacherTask {
  public final int in;
  public final int classes;
  private final int width;
  private final float[] w1;
  private final float[] w2;

  public TeacherTask(int in, int width, int classes, long seed) {
    this.in = in;
    this.width = width;
    this.classes = classes;
    SplittableRandom r = new SplittableRandom(seed);
    w1 = new float[in * width];
    w2 = new float[width * classes];
    for (int i = 0; i < w1.length; i++) {
      w1[i] = (float) (r.nextGaussian() / Math.sqrt(in));
    }
    for (int i = 0; i < w2.length; i++) {
      w2[i] = (float) (r.nextGaussian() * 2 / Math.sqrt(width));
    }
  }

  /** Fills {@code x} with a fresh input and returns the teacher's label for it. */
  public int sample(SplittableRandom r, float[] x) {
    for (int i = 0; i < in; i++) {
      x[i] = (float) r.nextGaussian();
    }
    return label(x);
  }

  /** The teacher's answer. */
  public int label(float[] x) {
    float[] h = new float[width];
    for (int i = 0; i < in; i++) {
      for (int j = 0; j < width; j++) {
        h[j] += x[i] * w1[i * width + j];
      }
    }
    int best = 0;
    double bestScore = Double.NEGATIVE_INFINITY;
    for (int c = 0; c < classes; c++) {
      double s = 0;
      for (int j = 0; j < width; j++) {
        s += Math.tanh(h[j]) * w2[j * classes + c];
      }
      if (s > bestScore) {
        bestScore = s;
        best = c;
      }
    }
    return best;
  }
}
