"""The params file of a ``musicdiff`` tool run outside DVC (``musicdiff fad``, the creative tools): the same
``params.yaml`` the pipeline reads, so a folder scored or a WAV read by hand meets the thresholds the
pipeline applies (``evaluation``, ``inputs``, ``reference_sets``)."""

from __future__ import annotations

from pathlib import Path

DEFAULT = "params.yaml"


def load_tool_params(path: str | Path | None) -> tuple[dict, Path]:
    """``(params, path)`` of the ``--params`` argument ``path``.

    ``None`` (the flag not given) reads ``params.yaml`` of the working directory when there is one and
    gives ``{}`` (every default) when there is none; a path that was given must exist.

    Raises:
        FileNotFoundError: ``path`` was given and is not a file (the message names it).
        ValueError: the file is not YAML, or its top level is not a mapping (the message names it).
    """
    import yaml

    explicit = path is not None
    path = Path(DEFAULT if path is None else path)
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"--params {path}: no such file (leave --params out to use ./{DEFAULT} when "
                                    f"present, else the defaults)")
        return {}, path
    try:
        params = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"--params {path}: cannot be read as YAML ({str(error).splitlines()[0]})") from None
    if params is None:
        return {}, path
    if not isinstance(params, dict):
        raise ValueError(f"--params {path}: the top level is a {type(params).__name__}, not a mapping of sections")
    return params, path


def input_policy(params: dict, **overrides):
    """The bad-input policy (``musicdiff.data.screening.InputPolicy``) of ``params['inputs']`` with the
    overrides that are not None. Raises ``ValueError`` naming an unknown or bad key."""
    from musicdiff.data.screening import InputPolicy

    return InputPolicy.from_params(params.get("inputs"), **overrides)
