"""One evaluation protocol behind every FAD and KAD musicdiff reports.

* ``protocol``: how audio becomes evaluation clips (duration, sample rate, segmentation), the
  independent frames of a clip, and the check that two sets were made the same way;
* ``sets``: embedding sets (a folder's clips embedded under a protocol, through the cache);
* ``scoring``: the one scoring path: FAD, KAD and FAD-inf with intervals, counts and flags;
* ``comparison``: is A better than B (differences with intervals, verdicts) and rankings;
* ``perclip``: per-clip outlier z-scores at equal footing;
* ``floors``: real audio alone and through a family's decoder alone, the rows every model is read
  against;
* ``degradations``: graded degradations of real music for the metric-sensitivity analysis;
* ``engine``: screening and embedding a list of files (cache first, decoding beside the network);
* ``embeddings/``: the networks (MusiCNN, VGGish, CLAP) and the log-mel reference, one module each;
* ``metrics/``: Frechet distance, FAD-inf, KAD, sample-size rules and the loudness filter;
* ``systems``: external systems (folders, generators, model folders) made into scoreable sets;
* ``regression``: the FAD regression check against a committed baseline;
* ``bench`` / ``bench_models``: the benchmark against fadtk on the same inputs.

Nothing here knows about DVC or MLflow; the stage scripts in ``pipelines/`` read params and files,
call these functions and log what they return. Import the submodules themselves (this package
imports nothing, so a stage pays only for what it uses).
"""
