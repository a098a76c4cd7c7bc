"""Distances between embedding distributions (Frechet distance, FAD-inf, KAD), sample-size rules, and the
loudness measure of the noisy-sample filter."""
