"""One evaluation protocol behind every FAD and KAD musicdiff reports.

* ``protocol``: how audio becomes evaluation clips (duration, sample rate, segmentation), the
  independent frames of a clip, and the check that two sets were made the same way;
* ``sets``: embedding sets (a folder's clips embedded under a protocol, through the cache);
* ``scoring``: the one scoring path: FAD, KAD and FAD-inf with intervals, counts and flags;
* ``comparison``: is A better than B (differences with intervals, verdicts) and rankings;
* ``perclip``: per-clip outlier z-scores at equal footing;
* ``floors``: real audio alone and through a family's decoder alone, the rows every model is read
  against;
* ``degradations``: graded degradations of real music for the metric-sensitivity analysis.

Nothing here knows about DVC or MLflow; the stage scripts in ``pipelines/`` read params and files,
call these functions and log what they return. Import the submodules themselves (this package
imports nothing, so a stage pays only for what it uses).
"""
