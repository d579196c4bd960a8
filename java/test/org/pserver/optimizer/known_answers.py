#!/usr/bin/env python3
"""Prints the literal expected weights of KnownAnswersTest (Adam, Adagrad, Adadelta; unsigned
integer cases), independently of pserver's code: the spec's formulas (paddle-pserver-spec.md 4.5,
4.6) with pserver's fixes (Adagrad descends), in Python floats (IEEE double) and the math module.

float32 follows the seed: inputs rounded to float32, double arithmetic, every stored value
(weights and state) rounded to float32 on assignment. pserver computes float32 in float, so the
test compares float32 within a few ulps (KnownAnswersTest.F32_TOL). Integer parameters: the step
in double, p + s exact and rounded half to even, saturated to the type's range; state in double.

Run once: python3 known_answers.py
"""
import math
import struct
from fractions import Fraction


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


P0, G = [1.0, -0.5, 2.0], [0.1, -0.2, 0.3]


def run(kind, single, lr, steps=3, **h):
    r = f32 if single else (lambda x: x)
    p, g = [r(x) for x in P0], [r(x) for x in G]
    s1, s2 = [0.0] * 3, [0.0] * 3
    rows = []
    for n in range(1, steps + 1):
        rate = lr(n)
        for i in range(3):
            x = g[i]
            if kind == 'adam':
                b1, b2, eps, d = h['b1'], h['b2'], h['eps'], h['decay']
                lrt = rate * math.sqrt(1 - b2 ** n) / (1 - b1 ** n)
                s1[i] = r(b1 * s1[i] + (1 - b1) * x)
                s2[i] = r(b2 * s2[i] + (1 - b2) * x * x)
                p[i] = r(p[i] - lrt * (s1[i] / math.sqrt(s2[i] + eps) + d * p[i]))
            elif kind == 'adagrad':
                eps, d = h['eps'], h['decay']
                s1[i] = r(s1[i] + r(x * x))
                p[i] = r(p[i] - (rate * x / math.sqrt(s1[i] + eps) + rate * d * p[i]))
            elif kind == 'adadelta':
                rho, eps, d = h['rho'], h['eps'], h['decay']
                s1[i] = r(rho * s1[i] + (1 - rho) * x * x)
                u = r(math.sqrt(s2[i] + eps) / math.sqrt(s1[i] + eps) * x)
                s2[i] = r(rho * s2[i] + (1 - rho) * u * u)
                p[i] = r(p[i] - (rate * u + rate * d * p[i]))
        rows.append(list(p))
    return rows


def integer(kind, p, g, steps, hi, **h):
    s1, s2 = [0.0] * len(p), [0.0] * len(p)
    rows = []
    for n in range(1, steps + 1):
        for i, x in enumerate(g):
            x = float(x)  # uint64 -> double rounds to nearest even, like the kernels
            if kind == 'adagrad':
                s1[i] += x * x
                s = -(h['lr'] * x / math.sqrt(s1[i] + h['eps']))
            elif kind == 'adadelta':
                rho, eps = h['rho'], h['eps']
                s1[i] = rho * s1[i] + (1 - rho) * x * x
                u = math.sqrt(s2[i] + eps) / math.sqrt(s1[i] + eps) * x
                s2[i] = rho * s2[i] + (1 - rho) * u * u
                s = -(h['lr'] * u)
            elif kind == 'adam':
                lrt = h['lr'] * math.sqrt(1 - 0.999 ** n) / (1 - 0.9 ** n)
                s1[i] = 0.9 * s1[i] + (1 - 0.9) * x
                s2[i] = 0.999 * s2[i] + (1 - 0.999) * x * x
                s = -(lrt * (s1[i] / math.sqrt(s2[i] + 1e-8)))
            elif kind == 'nesterov':
                s1[i] = 0.5 * s1[i] - h['lr'] * x
                s = 0.5 * s1[i] - h['lr'] * x
            p[i] = max(0, min(hi, round(Fraction(p[i]) + Fraction(s))))  # half to even
        rows.append(list(p))
    return rows


def show(name, rows, digits=None):
    print(name)
    for row in rows:
        print('  {' + ', '.join(('%.*g' % (digits, v)) if digits else repr(v) for v in row) + '},')


for single in (True, False):
    t, d = ('float32', 9) if single else ('float64', None)
    show(f'adam {t}', run('adam', single, lambda n: 0.01, b1=0.9, b2=0.999, eps=1e-8, decay=0.1), d)
    show(f'adam linear {t}', run('adam', single, lambda n: max(0.01 - 0.001 * n, 0.0075),
                                 b1=0.9, b2=0.999, eps=1e-8, decay=0.1), d)
    show(f'adagrad decay 0 {t}', run('adagrad', single, lambda n: 0.1, eps=1e-6, decay=0.0), d)
    show(f'adagrad decay 0.5 {t}', run('adagrad', single, lambda n: 0.1, eps=1e-6, decay=0.5), d)
    show(f'adadelta {t}', run('adadelta', single, lambda n: 1.0, rho=0.9, eps=1e-6, decay=0.1), d)
U32, U64 = 2 ** 32 - 1, 2 ** 64 - 1
show('uint32 adagrad', integer('adagrad', [10, 1], [3, 3], 3, U32, lr=2, eps=1e-6))
show('uint32 adadelta', integer('adadelta', [100, 3], [1, 1], 3, U32, lr=1000, rho=0.9, eps=1e-6))
show('uint64 adam', integer('adam', [2 ** 63 + 1, 10, 1], [5, 5, 5], 3, U64, lr=0.7))
show('uint64 nesterov', integer('nesterov', [10, 2 ** 64 - 2], [1, 2 ** 64 - 1], 3, U64, lr=1))
