"""The smallest program. True verdict: too-short."""

print("hi")
