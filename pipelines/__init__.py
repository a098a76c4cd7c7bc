"""The DVC stage scripts of musicdiff: each reads params.yaml and files, calls the library and logs to MLflow."""
