"""Fidelity and diversity of an evaluation set against a reference set: precision, recall, density,
coverage, from k nearest neighbours of per-clip embeddings, with jackknife intervals.

Inputs are one vector per clip, (n, dim): a clip's frames averaged (:func:`clip_means`). With the
reference (real) clips ``X`` (m of them), the evaluation (fake) clips ``Y`` (n), ``NND_k(x)`` the
distance from a point to its k-th nearest neighbour in its own set (itself excluded) and
``B(x, r) = {z : ||z - x|| < r}`` (an open ball), the four numbers are

* **precision** (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models", NeurIPS, eq. 1-2): the fraction of evaluation clips inside the union of the
  reference balls, ``1/n sum_j 1[exists i: Y_j in B(X_i, NND_k(X_i))]``. Fidelity: how much of what the
  model makes looks like real music. 1 is the top;
* **recall** (ibid.): the fraction of reference clips inside the union of the evaluation balls
  ``B(Y_j, NND_k(Y_j))``. Diversity: how much of the real music the model's output reaches;
* **density** (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models",
  ICML, eq. 3): ``1/(k n) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]``, how many reference balls hold an
  evaluation clip, on average, over k. Near 1 for two samples of one distribution; above 1 where the
  model crowds into dense real regions; not bounded by 1;
* **coverage** (ibid., eq. 4): ``1/m sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]``, the fraction of
  reference balls that hold at least one evaluation clip. Near ``1 - (1 - k/m)^n`` (~1 - e^-k, 0.99 at
  k = 5 and n = m) for one distribution.

Outliers (Naeem et al.'s argument for density and coverage): a far point's k-NN ball is huge.
Measured in ``tests/test_prdc.py`` (5% outliers, 8-d Gaussians): outliers in the reference raise
precision by 0.07-0.13 and coverage by about 0.01, but density nearly as much as precision (every
evaluation clip inside an outlier's ball counts once more); outliers in the evaluation set raise
recall by 0.04-0.12 and leave coverage within 0.025. Coverage is the robust one; density is robust to
outliers in the evaluation set only.

**Nearest neighbours.** Exact, in float64, a block of :data:`BLOCK_ROWS` rows against a whole set at
a time (peak memory about 6 x 8 x BLOCK_ROWS x the larger set's size bytes; the full distance matrix
is never built; measured: 20,000 x 20,000 32-d clips in 31 s on one core, 0.4 GB above the inputs). Distances are expanded as ``|a|^2 + |b|^2 - 2 a.b``
on data centred on the reference mean; every comparison that rounding could decide wrongly (within a
bound of ``8 (dim + 4) eps (|a|^2 + |b|^2)``) and every selected neighbour's distance are recomputed
from direct differences of the uncentred inputs. So exact duplicates are at distance exactly 0 and
each ``<`` is decided as on direct differences.

**Ties and duplicates**, as in the ``prdc`` package (Naeem et al.'s code, ``compute_prdc``) exactly:
the radius is the k-th smallest distance to the *other* points of the set (duplicates count as
neighbours at distance 0) and membership is strict (``<``). A point with k or more exact duplicates
in its own set has radius 0 and an empty ball: it admits no evaluation clip, not even its own copy.
The result counts such points (``zero_radius_real``, ``zero_radius_fake``) so that a table can mark
them; a non-zero count means duplicated clips in a set, which should be fixed upstream.

**Intervals.** The 95% interval is taken over evaluation clips with the reference fixed: it describes
the spread of the metric over evaluation sets of the same size n drawn from the same generator,
scored against *this* reference sample (not the variation a different reference sample would add, and
not the metric's dependence on n: coverage grows with n). It comes from the delete-one jackknife
(Efron & Stein 1981, "The jackknife estimate of variance", Ann. Statist. 9(3)): every leave-one-out
value follows in closed form from the pairs computed once (the reference radii never change; leaving
out evaluation clip j removes its ball and its count, and grows the balls of the clips that had j
among their k neighbours to their (k+1)-th neighbour). Precision, recall and coverage get the Wilson
interval at the effective sample size ``p(1-p)/se^2`` (:mod:`musicdiff.evaluation.metrics.intervals`;
n where the error is 0), density a normal interval. Why not the bootstrap: resampling with
replacement leaves ~37% of the clips out of each resample, and recall and coverage are functions of
the *set* of clips, so the resampled values sit far from the estimate (coverage about 0.1 lower
here); worse, a reference ball that no evaluation clip reached can never be reached by a resample, so
the bootstrap spread of coverage was 70% of the true spread at a coverage of 0.63, and its re-centred
interval covered the target in 82% of repetitions (recall: spread 80%, 84-93%). The jackknife errs
the other way, as Efron and Stein proved it must in expectation: on 8-d Gaussians (n = 120, m = 200)
its standard error was 1.0x the true spread for precision and density, 1.1-1.4x for coverage and
1.4-1.8x for recall. ``tests/test_prdc_simulations.py`` checks that each interval covers E[metric at
this n] over 2000 fresh draws against a fixed reference in >= 92% of 400 repetitions.

**How many clips.** :data:`MIN_CLIPS_TO_READ` (120): below this many evaluation clips the interval of
at least one proportion is wider than +-0.1. Rule: the smallest n on the grid 30, 60, 90, 120, 150,
200 at which the widest mean half-width of the 95% intervals of precision, recall and coverage is at
most 0.1, for two samples of one 8-d Gaussian, k = 5, a reference of as many clips, 200 repetitions
(measured in ``tests/test_prdc_simulations.py``: 0.109 at 90, 0.090 at 120; recall's is the widest,
its jackknife being conservative; coverage's alone is within 0.1 from n = 20, where it saturates near
``1 - e^-k``). Results on fewer clips are flagged ``few clips`` (:meth:`PrdcResult.flags`).

What the numbers do not say: they depend on the embedding, on k and on both set sizes (compare systems
at a matched n, :mod:`musicdiff.evaluation.prdc_comparison`); a precision of 1 does not mean the clips
are new (copies of training clips score perfectly: see :mod:`musicdiff.evaluation.replication`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.evaluation.metrics.intervals import wilson_from_se

DEFAULT_K = 5
BLOCK_ROWS = 512
MIN_CLIPS_TO_READ = 120
_EPS = np.finfo(np.float64).eps


class TooFewClipsError(ValueError):
    """A set holds fewer than k + 1 clips: the k-th neighbour of a clip among the others is undefined."""


def clip_means(clips) -> np.ndarray:
    """One vector per clip: the mean over frames of each (frames_i, dim) array of ``clips`` (e.g.
    ``EmbeddedSet.clips``), as float64 (n, dim). Raises ``ValueError`` for an empty list, a clip with
    no frames or clips of different dimensions."""
    if len(clips) == 0:
        raise ValueError("no clips")
    rows = []
    for i, c in enumerate(clips):
        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] == 0:
            raise ValueError(f"clip {i} must be (frames >= 1, dim), got shape {c.shape}")
        rows.append(c.mean(axis=0))
    if len({r.shape for r in rows}) > 1:
        raise ValueError(f"clips of different dimensions: {sorted({r.shape[0] for r in rows})}")
    return np.stack(rows)


def checked_points(x, what: str, k: int) -> np.ndarray:
    """``x`` as float64 (n, dim). Raises ``ValueError`` naming ``what`` for a non-2-D array or NaN/inf,
    :class:`TooFewClipsError` for fewer than ``k + 1`` clips."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{what} embeddings must be (clips, dim), got shape {x.shape}")
    if x.shape[0] < k + 1:
        raise TooFewClipsError(f"{what} set has {x.shape[0]} clips; k = {k} nearest neighbours need at least "
                               f"{k + 1}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} embeddings contain NaN or inf")
    return x


def direct_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a - b||`` along the last axis from direct differences (broadcast shapes, float64)."""
    diff = a - b
    return np.sqrt(np.einsum("...d,...d->...", diff, diff))


class Points:
    """One set's clips (n, dim) float64 as given (``x``, for direct differences) and centred on
    ``centre`` (``c``, for the expanded distances), with the squared norms of ``c``."""

    def __init__(self, x: np.ndarray, centre: np.ndarray):
        self.x, self.centre = x, centre
        self.c = x - centre
        self.sq = np.einsum("ij,ij->i", self.c, self.c)

    def __len__(self) -> int:
        return len(self.x)

    def block(self, rows: slice, other: "Points") -> tuple[np.ndarray, np.ndarray]:
        """Expanded squared distances (rows, len(other)) and their rounding bound."""
        d2 = self.c[rows] @ other.c.T
        d2 *= -2.0
        scale = self.sq[rows, None] + other.sq[None, :]
        d2 += scale
        scale *= 8.0 * (self.x.shape[1] + 4) * _EPS
        return d2, scale

    def less(self, rows: slice, other: "Points", d2: np.ndarray, err: np.ndarray, thr: np.ndarray) -> np.ndarray:
        """Boolean (rows, len(other)): ``||self_i - other_j|| < thr`` (``thr`` broadcast to the block), the
        pairs rounding could decide wrongly recomputed from direct differences."""
        thr2 = thr * thr
        out = d2 + err < thr2 * (1.0 - 4.0 * _EPS)
        unsure = d2 - err <= thr2 * (1.0 + 4.0 * _EPS)
        unsure &= ~out
        if unsure.any():
            r, c = np.nonzero(unsure)
            out[r, c] = direct_distances(self.x[rows][r], other.x[c]) < np.broadcast_to(thr, d2.shape)[r, c]
        return out


def neighbour_table(points: Points, count: int, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Each point's ``count`` nearest other points of the same set: indices (n, count) int64 and direct
    distances (n, count), nearest first (``count <= n - 1``). Candidates are selected on the expanded
    distances (``np.argpartition`` per block), their distances recomputed from direct differences."""
    n = len(points)
    idx, dist = np.empty((n, count), np.int64), np.empty((n, count))
    for start in range(0, n, block_rows):
        rows = slice(start, min(start + block_rows, n))
        d2, _ = points.block(rows, points)
        local = np.arange(rows.stop - start)
        d2[local, local + start] = np.inf  # not its own neighbour (duplicates are)
        part = np.argpartition(d2, count - 1, axis=1)[:, :count]
        exact = direct_distances(points.x[rows][:, None, :], points.x[part])
        order = np.argsort(exact, axis=1, kind="stable")
        idx[rows], dist[rows] = np.take_along_axis(part, order, 1), np.take_along_axis(exact, order, 1)
    return idx, dist


class PrdcReference:
    """A reference set prepared once for every evaluation set scored against it: its clips (m, dim)
    checked (:func:`checked_points`, ``name`` in the errors), centred on their mean, and their k-NN
    radii ``radius`` (m,), computed in blocks of ``block_rows`` rows."""

    def __init__(self, real, k: int = DEFAULT_K, block_rows: int = BLOCK_ROWS, name: str = "reference"):
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        x = checked_points(real, name, k)
        self.k, self.name, self.block_rows = int(k), name, block_rows
        self.points = Points(x, x.mean(axis=0))
        self.radius = neighbour_table(self.points, self.k, block_rows)[1][:, -1]

    def __len__(self) -> int:
        return len(self.points)


class Neighbourhoods:
    """What the four metrics and their jackknife need, computed once for a prepared reference (m clips)
    and an evaluation set (n, dim) (float64, checked by :func:`checked_points`).

    * ``real_radius`` (m,), ``fake_radius`` (n,): k-NN radii within each set; ``table_idx``,
      ``table_dist`` (n, K): each evaluation clip's K = min(n - 1, k + 1) nearest evaluation neighbours;
    * ``counts`` (n,): how many reference balls hold evaluation clip j (density's numerator);
    * ``ball_real``, ``ball_fake`` (int32, one entry a pair): reference clip i's ball holds evaluation
      clip j (coverage; 8 bytes a pair, about k n for matched sets);
    * ``cand_real``, ``cand_fake``, ``cand_dist``: reference clips closer to evaluation clip j than
      its K-th evaluation neighbour, with their direct distances (recall, with clip j's ball as it is
      and as it grows when one of its k neighbours is left out).

    :meth:`values` gives (precision, recall, density, coverage), :meth:`leave_one_out` the same with
    each evaluation clip left out in turn.
    """

    def __init__(self, reference: PrdcReference, fake: np.ndarray, block_rows: int = BLOCK_ROWS):
        real = reference.points
        if real.x.shape[1] != fake.shape[1]:
            raise ValueError(f"dimension mismatch: reference {real.x.shape[1]}, evaluation {fake.shape[1]}")
        k = reference.k
        self.real, self.fake, self.k = real, Points(fake, real.centre), k
        self.real_radius = reference.radius
        self.table_idx, self.table_dist = neighbour_table(self.fake, min(len(fake) - 1, k + 1), block_rows)
        self.fake_radius = self.table_dist[:, k - 1]
        self._pairs(block_rows)

    def _pairs(self, block_rows: int) -> None:
        """One pass of evaluation blocks against the reference: balls, counts and recall's candidates."""
        n, outer = len(self.fake), self.table_dist[:, -1]
        self.counts = np.zeros(n, np.int64)
        ball, cand = [], []
        for start in range(0, n, block_rows):
            rows = slice(start, min(start + block_rows, n))
            d2, err = self.fake.block(rows, self.real)
            inside = self.fake.less(rows, self.real, d2, err, self.real_radius[None, :])
            self.counts[rows] = inside.sum(axis=1)
            j, i = np.nonzero(inside)
            ball.append((i.astype(np.int32), (j + start).astype(np.int32)))
            near = self.fake.less(rows, self.real, d2, err, outer[rows, None])
            j, i = np.nonzero(near)
            cand.append((i.astype(np.int32), (j + start).astype(np.int32)))
        self.ball_real, self.ball_fake = (np.concatenate(p) for p in zip(*ball))
        self.cand_real, self.cand_fake = (np.concatenate(p) for p in zip(*cand))
        self.cand_dist = direct_distances(self.fake.x[self.cand_fake], self.real.x[self.cand_real])
        self.in_fake_ball = self.cand_dist < self.fake_radius[self.cand_fake]

    def values(self) -> np.ndarray:
        """(precision, recall, density, coverage), float64 (4,)."""
        m = len(self.real)
        covered = np.bincount(self.ball_real, minlength=m) > 0
        recalled = np.bincount(self.cand_real[self.in_fake_ball], minlength=m) > 0
        return np.array([np.mean(self.counts > 0), recalled.mean(), self.counts.mean() / self.k, covered.mean()])

    def _recall_leave_one_out(self) -> np.ndarray:
        """(n,) recall with each evaluation clip left out: the reference clips only it recalled are lost,
        and those that a neighbour's ball reaches once it grows to its (k+1)-th neighbour are gained."""
        m, n, k = len(self.real), len(self.fake), self.k
        if n - 1 < k + 1:
            return np.full(n, np.nan)
        real, fake = self.cand_real[self.in_fake_ball], self.cand_fake[self.in_fake_ball]
        times = np.bincount(real, minlength=m)
        sole = times[real] == 1
        only = np.full(m, -1)
        only[real[sole]] = fake[sole]
        lost = np.bincount(fake[sole], minlength=n)
        grows = ~self.in_fake_ball & (self.cand_dist < self.table_dist[self.cand_fake, k])
        g_real = np.repeat(self.cand_real[grows], k)
        g_left = self.table_idx[self.cand_fake[grows], :k].ravel()  # left out, this ball grows
        gain = (times[g_real] == 0) | (only[g_real] == g_left)
        keys = np.unique(g_left[gain].astype(np.int64) * m + g_real[gain])
        gained = np.bincount(keys // m, minlength=n)
        return (np.count_nonzero(times) - lost + gained) / m

    def leave_one_out(self) -> np.ndarray:
        """(n, 4): (precision, recall, density, coverage) with evaluation clip j left out, row j, in closed
        form from the pairs (no distances recomputed). Recall is NaN when n - 1 < k + 1."""
        m, n = len(self.real), len(self.fake)
        hit = (self.counts > 0).astype(np.float64)
        times = np.bincount(self.ball_real, minlength=m)
        sole = times[self.ball_real] == 1
        lost = np.bincount(self.ball_fake[sole], minlength=n)
        out = np.empty((n, len(METRICS)))
        out[:, 0] = (hit.sum() - hit) / (n - 1)
        out[:, 1] = self._recall_leave_one_out()
        out[:, 2] = (self.counts.sum() - self.counts) / (self.k * (n - 1))
        out[:, 3] = (np.count_nonzero(times) - lost) / m
        return out


METRICS = ("precision", "recall", "density", "coverage")


def jackknife_se(leave_one_out: np.ndarray) -> np.ndarray:
    """Delete-one jackknife standard errors (Efron & Stein 1981) of the columns of ``leave_one_out``
    (n, metrics): ``sqrt((n - 1)/n sum_j (theta_(j) - mean)^2)``; NaN for a column holding NaN."""
    n = len(leave_one_out)
    return np.sqrt((n - 1) / n * ((leave_one_out - leave_one_out.mean(axis=0)) ** 2).sum(axis=0))


@dataclass(frozen=True)
class PrdcResult:
    """Precision, recall, density and coverage of ``n_fake`` evaluation clips against ``n_real`` reference
    clips (``dim``-d, ``k`` neighbours), each with its interval (``*_low``, ``*_high``) and jackknife
    standard error (``*_se``; NaN where undefined), and the reference (``zero_radius_real``) and
    evaluation (``zero_radius_fake``) clips whose k-NN radius is 0 (see the module docstring)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_real: int
    n_fake: int
    dim: int
    precision_low: float = float("nan")
    precision_high: float = float("nan")
    recall_low: float = float("nan")
    recall_high: float = float("nan")
    density_low: float = float("nan")
    density_high: float = float("nan")
    coverage_low: float = float("nan")
    coverage_high: float = float("nan")
    precision_se: float = float("nan")
    recall_se: float = float("nan")
    density_se: float = float("nan")
    coverage_se: float = float("nan")
    zero_radius_real: int = 0
    zero_radius_fake: int = 0

    @property
    def readable(self) -> bool:
        """At least :data:`MIN_CLIPS_TO_READ` evaluation clips (intervals within about +-0.1)."""
        return self.n_fake >= MIN_CLIPS_TO_READ

    def interval(self, metric: str) -> tuple[float, float]:
        """``(low, high)`` of one of :data:`METRICS`."""
        return getattr(self, f"{metric}_low"), getattr(self, f"{metric}_high")

    def flags(self) -> list[str]:
        """What a table should mark: too few clips to read the intervals, zero-radius clips."""
        out = []
        if not self.readable:
            out.append(f"few clips: {self.n_fake} < {MIN_CLIPS_TO_READ}, intervals too wide to read")
        if self.zero_radius_real:
            out.append(f"zero radius: {self.zero_radius_real} reference clips with >= k exact duplicates")
        if self.zero_radius_fake:
            out.append(f"zero radius: {self.zero_radius_fake} evaluation clips with >= k exact duplicates")
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "readable": self.readable}


def intervals(values: np.ndarray, se: np.ndarray, n_fake: int, ci: float = 0.95) -> dict[str, float]:
    """``{metric_low, metric_high}`` from the estimates and jackknife errors (module docstring): Wilson at
    the effective sample size for the proportions (precision, recall, coverage; ``n_fake`` where the
    error is 0), normal for density (not bounded by 1, floored at 0)."""
    from scipy.stats import norm

    out = {}
    for c, name in enumerate(METRICS):
        if name == "density":
            half = float(norm.ppf(0.5 + ci / 2.0)) * se[c]
            low, high = max(0.0, values[c] - half), values[c] + half
        else:
            low, high = wilson_from_se(float(values[c]), float(se[c]), n_fake, ci)
        out[f"{name}_low"], out[f"{name}_high"] = float(low), float(high)
    return out


def prdc_score(real, fake, k: int | None = None, ci: float = 0.95, block_rows: int = BLOCK_ROWS,
               intervals_: bool = True) -> PrdcResult:
    """Precision, recall, density and coverage (module docstring; Kynkaanniemi et al. 2019 eq. 1-2,
    Naeem et al. 2020 eq. 3-4) of evaluation clips ``fake`` (n, dim) against reference clips ``real``
    ((m, dim), or a :class:`PrdcReference` prepared once for many sets), one vector per clip
    (:func:`clip_means`), with ``k`` nearest neighbours (default :data:`DEFAULT_K`, or the prepared
    reference's), in blocks of ``block_rows`` rows, and (``intervals_``) the jackknife intervals over
    evaluation clips at level ``ci``.

    Raises :class:`TooFewClipsError` (a ``ValueError``) naming the set and its count when either side
    has fewer than k + 1 clips, ``ValueError`` naming the set for NaN/inf or a non-2-D array, and for
    mismatched dimensions, k < 1 or a k other than the prepared reference's. With n = k + 1 evaluation clips recall has no interval (NaN).
    """
    if not isinstance(real, PrdcReference):
        real = PrdcReference(real, DEFAULT_K if k is None else k, block_rows)
    elif k is not None and k != real.k:
        raise ValueError(f"k = {k} but the reference was prepared with k = {real.k}")
    k = real.k
    fake = checked_points(fake, "evaluation", k)
    hoods = Neighbourhoods(real, fake, block_rows)
    values = hoods.values()
    extra = {}
    if intervals_:
        se = jackknife_se(hoods.leave_one_out())
        extra = {**intervals(values, se, len(fake), ci), **{f"{n}_se": float(e) for n, e in zip(METRICS, se)}}
    return PrdcResult(*(float(v) for v in values), k=k, n_real=len(real), n_fake=len(fake), dim=fake.shape[1],
                      zero_radius_real=int(np.count_nonzero(hoods.real_radius == 0)),
                      zero_radius_fake=int(np.count_nonzero(hoods.fake_radius == 0)), **extra)
