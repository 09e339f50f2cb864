#!/usr/bin/env python3
# Independent reference for the golden values in src/skellam.rs: the Skellam mechanism's RDP
# (Agarwal, Kairouz & Liu 2021, Thm 3.5), the conditional-rounding L2 bound (Kairouz, Liu &
# Steinke 2021, DDG, Thm 4.1 with beta = exp(-1/2)), composed over rounds and converted to
# (epsilon, delta) as Opacus does (Balle et al. 2020), over the integer orders of Opacus'
# DEFAULT_ALPHAS. Plain Python floats; run: python3 crates/privacy/scripts/skellam_ref.py
import math

ORDERS = [a for a in [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) if float(a).is_integer()]
BETA = math.exp(-0.5)

def l2_sq(clip, scale, dim):
    c = clip * scale
    return min(c * c + dim / 4 + math.sqrt(2 * math.log(1 / BETA)) * (c + math.sqrt(dim) / 2),
               (c + math.sqrt(dim)) ** 2)

def rdp(alpha, mu, l1, l2s):
    return alpha * l2s / (4 * mu) + min(((2 * alpha - 1) * l2s + 6 * l1) / (16 * mu * mu), 3 * l1 / (4 * mu))

def epsilon(clip, scale, dim, mu, rounds, delta):
    l2s = l2_sq(clip, scale, dim)
    l1 = min(math.sqrt(dim) * math.sqrt(l2s), l2s)
    best = math.inf
    for a in ORDERS:
        r = rounds * rdp(a, mu, l1, l2s)
        best = min(best, r - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a))
    return best

CASES = [
    # clip, scale, dim, mu, rounds, delta
    (1.0, 1000.0, 10_000, 1e6, 1, 1e-5),
    (1.0, 1000.0, 10_000, 5e5, 10, 1e-5),
    (0.5, 1e6, 532_840, 2e11, 10, 1e-5),
    (1.0, 10.0, 100, 20.0, 3, 1e-6),
]
for c in CASES:
    print(c, repr(epsilon(*c)))
