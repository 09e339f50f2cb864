#!/usr/bin/env python3
# Independent reference for the golden values in src/accountant.rs.
# Run: python3 crates/privacy/scripts/rdp_ref.py  (needs mpmath; ~15 s)
import math, sys
import mpmath as mp
mp.mp.dps = 50
ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))

def log_a_int(q, s, a):
    q = mp.mpf(q); s = mp.mpf(s)
    tot = mp.mpf(0)
    for i in range(a + 1):
        tot += mp.binomial(a, i) * q**i * (1 - q)**(a - i) * mp.e**((i*i - i) / (2*s*s))
    return mp.log(tot)

def log_a_frac(q, s, a):
    q = mp.mpf(q); s = mp.mpf(s); a = mp.mpf(a)
    a0 = mp.mpf(0); a1 = mp.mpf(0)
    z0 = s**2 * mp.log(1/q - 1) + mp.mpf(0.5)
    i = 0
    while True:
        coef = mp.binomial(a, i)
        j = a - i
        t0 = coef * q**i * (1-q)**j
        t1 = coef * q**j * (1-q)**i
        e0 = mp.erfc((i - z0) / (mp.sqrt(2) * s)) / 2
        e1 = mp.erfc((z0 - j) / (mp.sqrt(2) * s)) / 2
        s0 = t0 * mp.e**((i*i - i) / (2*s*s)) * e0
        s1 = t1 * mp.e**((j*j - j) / (2*s*s)) * e1
        a0 += s0; a1 += s1
        i += 1
        if max(mp.log(abs(s0)), mp.log(abs(s1))) < -30:
            break
    return mp.log(a0 + a1)

def rdp(q, s, a):
    if q == 1.0:
        return mp.mpf(a) / (2 * mp.mpf(s)**2)
    if float(a).is_integer():
        return log_a_int(q, s, int(a)) / (a - 1)
    return log_a_frac(q, s, a) / (a - 1)

def eps(hist, delta):
    best = None
    for a in ORDERS:
        r = sum(rdp(q, s, a) * t for (s, q, t) in hist)
        e = r - (mp.log(delta) + mp.log(a)) / (a - 1) + mp.log(mp.mpf(a - 1) / a)
        if best is None or e < best[0]:
            best = (e, a)
    return best

if __name__ == "__main__":
    cases = [
        [(1.5, 0.04, 2250)],
        [(1.0, 0.01, 1000)],
        [(0.8, 0.1, 100)],
        [(4.0, 0.001, 100000)],
        [(1.1, 256/60000, 60000*15//256)],
        [(1.0, 0.01, 500), (2.0, 0.05, 300)],
        [(2.0, 1.0, 10)],
    ]
    for h in cases:
        for d in (1e-5,):
            e, a = eps(h, d)
            print(h, d, mp.nstr(e, 17), a)
