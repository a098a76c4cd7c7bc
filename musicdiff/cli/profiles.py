"""Parameter profiles: overlays that switch params.yaml to another configuration in one command.

A profile is a YAML file whose keys are merged into params.yaml: mappings merge key by key, every
other value (lists, numbers, strings) replaces the old one, and the top-level keys listed under
``replace:`` are replaced wholesale (so, e.g., the paper profile's ``variants`` are exactly the
study's, not the study's plus the CPU ones). Comments of params.yaml are kept (ruamel.yaml
round trip). ``git checkout params.yaml`` goes back to the committed profile.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from ruamel.yaml import YAML


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps comments and key order
    yaml.width = 120
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _plain(value):
    """Plain dicts and lists (anchors, aliases and ``<<`` merge keys resolved)."""
    return json.loads(json.dumps(value))


def merge(base, overlay):
    """``overlay`` merged into ``base`` (both mappings), in place; returns ``base``."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def apply_profile(params_path: Path, profile_path: Path) -> str:
    """The text of ``params_path`` with the profile at ``profile_path`` applied (nothing written).

    Raises ``FileNotFoundError`` naming a missing file and ``ValueError`` when ``replace`` names a
    key the profile does not set.
    """
    yaml = _yaml()
    for path in (params_path, profile_path):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
    params = yaml.load(Path(params_path).read_text())
    profile = yaml.load(Path(profile_path).read_text())
    replace = list(profile.pop("replace", []) or [])
    for key in replace:
        if key not in profile:
            raise ValueError(f"{profile_path}: replace lists {key!r} but the profile does not set it")
        params[key] = _plain(profile.pop(key))  # anchors and merge keys of the profile expanded
    merge(params, _plain(profile))
    out = io.StringIO()
    yaml.dump(params, out)
    return out.getvalue()


def load_profile(params_path: Path, profile_path: Path) -> dict:
    """``apply_profile`` parsed into plain Python data (for tests and dry runs)."""
    import yaml

    return yaml.safe_load(apply_profile(params_path, profile_path))


def write_profile(params_path: Path, profile_path: Path) -> None:
    """Apply the profile to ``params_path`` and write it back atomically."""
    text = apply_profile(params_path, profile_path)
    params_path = Path(params_path)
    fd, tmp = tempfile.mkstemp(dir=params_path.parent, prefix=".params.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, params_path)
