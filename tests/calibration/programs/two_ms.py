"""A script that works for about 2 ms. True verdict: too-short (no speedup promised)."""

print(sum(number * number for number in range(20_000)))
