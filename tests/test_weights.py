"""The weights registry: missing files say where they were looked for and how to add them; imports are
checked by SHA-256 and installed atomically; lookups follow the documented order; hashes are
remembered only while a file is unchanged; ``musicdiff weights`` lists and rejects.

Registry entries whose published hash no test file can match are replaced, in-process and per test,
by a TEMPORARY ENTRY carrying the hash of a file the test writes (``_temporary_entry``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicdiff.weights import fetch, registry, verify

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _temporary_entry(monkeypatch, key: str, data: bytes, *, prefix_only: bool = False) -> registry.WeightEntry:
    """Replace registry entry ``key`` by one whose published check is that of ``data``."""
    digest = hashlib.sha256(data).hexdigest()
    fields = (dict(sha256=None, sha256_prefix=digest[:8], size=len(data)) if prefix_only
              else dict(sha256=digest, sha256_prefix=None, size=None))
    entry = dataclasses.replace(registry.REGISTRY[key], **fields)
    monkeypatch.setitem(registry.REGISTRY, key, entry)
    return entry


def test_missing_weights_error_names_file_places_url_and_import_command(weights_env):
    with pytest.raises(registry.MissingWeightsError) as exc:
        verify.resolve("vggish")
    msg = str(exc.value)
    assert isinstance(exc.value, RuntimeError)
    assert "vggish-10086976.pth" in msg and "harritaylor_torchvggish_master" in msg
    assert str(weights_env["MUSICDIFF_WEIGHTS"] / "vggish" / "vggish-10086976.pth") in msg
    assert str(weights_env["TORCH_HOME"] / "hub" / "checkpoints" / "vggish-10086976.pth") in msg
    assert str(weights_env["TORCH_HOME"] / "hub" / "harritaylor_torchvggish_master") in msg
    assert registry.REGISTRY["vggish"].url in msg
    assert "musicdiff weights import PATH/TO/vggish-10086976.pth" in msg

    with pytest.raises(registry.MissingWeightsError) as exc:
        verify.resolve("clap-laion-music")
    msg = str(exc.value)
    assert "music_audioset_epoch_15_esc_90.14.pt" in msg and registry.REGISTRY["clap-laion-music"].sha256 in msg
    assert str(weights_env["HF_HOME"] / "hub" / "models--lukewys--laion_clap") in msg
    for repo in ("roberta-base", "bert-base-uncased", "facebook/bart-base"):
        assert f"huggingface-cli download {repo}" in msg


def test_import_accepts_a_matching_file_and_rejects_a_mismatching_one(weights_env, tmp_path, monkeypatch):
    data = os.urandom(4096)
    entry = _temporary_entry(monkeypatch, "clap-laion-music", data)
    download = _write(tmp_path / "downloads" / entry.filename, data)

    found = fetch.import_weights(download)
    dest = weights_env["MUSICDIFF_WEIGHTS"] / "clap" / entry.filename
    assert found.path == dest and dest.read_bytes() == data
    assert found.check == "sha256" and found.verified and found.sha256 == entry.sha256
    assert verify.find(entry).path == dest

    bad = _write(tmp_path / "bad" / entry.filename, os.urandom(4096))
    with pytest.raises(registry.WeightsMismatchError) as exc:
        fetch.import_weights(bad)
    msg = str(exc.value)
    assert f"expected SHA-256 {entry.sha256}" in msg and f"found SHA-256 {hashlib.sha256(bad.read_bytes()).hexdigest()}" in msg
    assert dest.read_bytes() == data, "a rejected file must not replace the installed one"
    assert sorted(p.name for p in dest.parent.iterdir()) == [entry.filename], "no temporary files left behind"

    renamed = _write(tmp_path / "renamed.bin", data)
    assert fetch.import_weights(renamed).entry.key == "clap-laion-music", "a renamed file is recognised by its SHA-256"
    with pytest.raises(registry.UnknownWeightsError, match="matches no registry entry"):
        fetch.import_weights(_write(tmp_path / "other.bin", b"unrelated"))
    with pytest.raises(registry.UnknownWeightsError, match="no registry entry"):
        fetch.import_weights(renamed, name="no-such-entry")


def test_prefix_and_size_check_of_torch_hub_style_checkpoints(weights_env, tmp_path, monkeypatch):
    data = os.urandom(3000)
    entry = _temporary_entry(monkeypatch, "vggish-pca", data, prefix_only=True)
    assert entry.check == "sha256-prefix+size"
    found = fetch.import_weights(_write(tmp_path / entry.filename, data))
    assert found.check == "sha256-prefix+size" and found.sha256 == hashlib.sha256(data).hexdigest()

    with pytest.raises(registry.WeightsMismatchError, match="expected 3,000 bytes, found 2,999 bytes"):
        fetch.import_weights(_write(tmp_path / "short" / entry.filename, data[:-1]))
    other = bytes(b ^ 0xFF for b in data)
    with pytest.raises(registry.WeightsMismatchError, match=f"a SHA-256 starting {entry.sha256_prefix}"):
        fetch.import_weights(_write(tmp_path / "other" / entry.filename, other))


def test_unverified_checkpoint_records_the_hash_found(weights_env, tmp_path):
    data = b"no SHA-256 is published for this file"
    found = fetch.import_weights(_write(tmp_path / "630k-audioset-best.pt", data))
    assert found.check == "unverified" and not found.verified
    assert found.sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(registry.MissingWeightsError) as exc:  # the checkpoint is there; laion_clap's HF repos are not
        verify.resolve("clap-laion-audio")
    msg = str(exc.value)
    assert "630k-audioset-best.pt" not in msg and "roberta-base" in msg and "3 required item(s) missing" in msg


def test_lookup_order_standard_caches_and_hash_memo(weights_env, tmp_path, monkeypatch):
    data = os.urandom(2048)
    entry = _temporary_entry(monkeypatch, "vggish", data, prefix_only=True)
    hub = fetch.import_weights(ROOT / "tests" / "data" / "random_vggish_hub")
    assert hub.entry.key == "vggish-hub" and hub.check == "unverified" and (hub.path / "hubconf.py").is_file()

    in_torch_hub = _write(weights_env["TORCH_HOME"] / "hub" / "checkpoints" / entry.filename, data)
    resolved = verify.resolve("vggish")
    assert resolved.checkpoint == in_torch_hub and resolved.path("vggish-hub") == hub.path
    assert resolved.weight_sha256 == hashlib.sha256(data).hexdigest() and resolved.verified

    ours = _write(weights_env["MUSICDIFF_WEIGHTS"] / "vggish" / entry.filename, data)
    assert verify.resolve("vggish").checkpoint == ours, "$MUSICDIFF_WEIGHTS comes before the torch hub cache"

    calls = []
    real = verify.sha256_file
    monkeypatch.setattr(verify, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
    verify.resolve("vggish")
    assert ours.resolve() not in calls, "an unchanged file is not hashed again"
    _write(ours, bytes(b ^ 0xFF for b in data))  # same size, new content
    with pytest.raises(registry.WeightsMismatchError, match=f"a SHA-256 starting {entry.sha256_prefix}"):
        verify.resolve("vggish")
    assert ours.resolve() in calls, "a changed file is hashed again"


def _cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME")}
    full_env.update({k: str(v) for k, v in env.items()}, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "weights", *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_weights_command_lists_missing_entries_and_rejects_a_mismatching_import(weights_env, tmp_path):
    listing = _cli(env=weights_env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for entry in registry.REGISTRY.values():
        assert entry.filename in listing.stdout
    vggish_rows = [line for line in lines if line.startswith("vggish ")]
    assert len(vggish_rows) == 3 and all(" missing " in line for line in vggish_rows)
    assert registry.REGISTRY["vggish"].url in listing.stdout and str(weights_env["MUSICDIFF_WEIGHTS"]) in listing.stdout

    bad = _write(tmp_path / "music_audioset_epoch_15_esc_90.14.pt", b"not the LAION checkpoint")
    rejected = _cli("import", str(bad), env=weights_env, cwd=tmp_path)
    assert rejected.returncode != 0
    assert f"expected SHA-256 {registry.REGISTRY['clap-laion-music'].sha256}" in rejected.stderr
    assert hashlib.sha256(bad.read_bytes()).hexdigest() in rejected.stderr
    assert not (weights_env["MUSICDIFF_WEIGHTS"] / "clap" / bad.name).exists()
