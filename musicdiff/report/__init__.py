"""Tables and figures from the MLflow runs: ``build`` writes every table, figure and the index of
``reports/``; the other modules each render one family of tables (``scores``, ``comparisons``,
``analyses``, ``sensitivity``, ``creative``, ``bench``, ``tables`` for speed) or the figures
(``figures``). Import the submodules themselves: this package imports nothing, so a stage that draws
one figure does not pay for the report stack."""
