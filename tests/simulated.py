"""Simulated embedding sets with a known answer: Gaussians whose Frechet distance, and whose expected
KAD against a fixed reference sample, are known in closed form."""

from __future__ import annotations

import numpy as np

from musicdiff.evaluation.protocol import EvaluationProtocol
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.evaluation.metrics.fad import GaussianStats, frechet_distance
from musicdiff.evaluation.metrics.kad import KAD_SCALE, _reference_term

PROTOCOL = EvaluationProtocol(0.73, 22050).to_dict()


class Gaussian:
    """N(mu, cov) in ``dim`` dimensions, drawn from with ``draw(n, rng)`` -> (n, dim)."""

    def __init__(self, mu: np.ndarray, cov: np.ndarray):
        self.mu, self.cov = np.asarray(mu, float), np.asarray(cov, float)
        self.chol = np.linalg.cholesky(self.cov)

    @property
    def stats(self) -> GaussianStats:
        return GaussianStats(self.mu, self.cov, 10**12)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mu + rng.normal(size=(n, len(self.mu))) @ self.chol.T


def world(dim: int, seed: int = 0, shift: float = 0.5) -> tuple[Gaussian, Gaussian]:
    """A reference and an evaluation Gaussian with different means and correlated covariances of a
    decaying spectrum (like a learnt embedding's)."""
    rng = np.random.default_rng(seed)
    spectrum = 4.0 / (1.0 + np.arange(dim))
    q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    q2 = np.linalg.qr(q + 0.3 * rng.normal(size=(dim, dim)))[0]
    ref = Gaussian(np.zeros(dim), (q * spectrum) @ q.T)
    evl = Gaussian(rng.normal(size=dim) * shift, (q2 * spectrum * rng.uniform(0.6, 1.4, dim)) @ q2.T)
    return ref, evl


def true_fd(a: Gaussian, b: Gaussian) -> float:
    return frechet_distance(a.stats, b.stats)[0]


def embedded(frames: np.ndarray, name: str, frames_per_clip: int = 1, window_s: float = 3.0) -> EmbeddedSet:
    """An ``EmbeddedSet`` of the rows of ``frames`` (clips of ``frames_per_clip`` frames) under the default
    protocol, as if a 200-d-style embedding with window ``window_s`` had made them."""
    frames = np.asarray(frames, dtype=np.float32)
    clips = [frames[i:i + frames_per_clip] for i in range(0, len(frames), frames_per_clip)]
    return EmbeddedSet(name, [f"{name}#{i}" for i in range(len(clips))], ["0" * 64] * len(clips), clips,
                       "simulated", "0" * 64, {"dim": frames.shape[1]}, PROTOCOL, window_s, len(clips), len(clips))


def expected_kad(reference: np.ndarray, evl: Gaussian, bandwidth: float) -> float:
    """E[KAD] over evaluation draws from ``evl`` against the fixed ``reference`` sample (m, dim), in closed
    form: for z ~ N(m, C), E exp(-||z||^2 / (2 h^2)) = det(I + C/h^2)^(-1/2) exp(-m^T (C + h^2 I)^(-1) m / 2)."""
    h2 = bandwidth**2
    dim = len(evl.mu)
    eye = np.eye(dim)
    ee = np.linalg.det(eye + 2.0 * evl.cov / h2) ** -0.5
    diff = np.asarray(reference, float) - evl.mu
    inv = np.linalg.inv(evl.cov + h2 * eye)
    re = np.linalg.det(eye + evl.cov / h2) ** -0.5 * np.exp(-0.5 * np.einsum("ij,jk,ik->i", diff, inv, diff))
    rr = _reference_term(np.asarray(reference, float), 1.0 / (2.0 * h2))
    return KAD_SCALE * float(rr + ee - 2.0 * re.mean())
