"""One-off: build the TensorFlow reference fixture ``musicnn_tf_reference.npz``.

NOT part of the package and NOT run by the tests.  It needs a separate TensorFlow
environment (about 2.6 GB, never a project dependency), e.g.::

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow tf_keras librosa soundfile "numpy<2"
    TF_USE_LEGACY_KERAS=1 /work/tfvenv/bin/python tests/data/make_musicnn_fixture.py \
        --samples /path/to/site-packages/fadtk/test/samples

What it does:

1. gets the ``musicnn==0.1.0`` wheel (``pip download --no-deps``, or ``--wheel``), checks its
   SHA-256 and that of ``MSD_musicnn/.data-00000-of-00001``, and unpacks it to a temp folder;
2. decodes a few MIT-licensed music clips shipped with fadtk (48 kHz Opus), resamples them to
   16 kHz with ``librosa.resample`` (soxr_hq), keeps a 3.5 s excerpt and quantises it to int16
   (the test rebuilds the exact float32 signal as ``int16 / 32768``);
3. computes the musicnn front end in float32 with librosa (``melspectrogram`` with sr 16000,
   n_fft 512, hop 256, 96 mels; librosa >= 0.10, so centred with constant padding; then
   ``log10(10000 * mel + 1)`` in float32, not musicnn's float16) -> ``logmel``;
4. cuts 187-frame patches from it, builds musicnn's own TF graph with the wheel's
   ``models.define_model(..., 'MSD_musicnn', 50)`` under ``tf.compat.v1`` (graph mode,
   ``is_training=False``), restores the checkpoint by prefix, and stores TF's outputs.

Arrays in the npz:
    clip_ids (n_clips,) str; audio_int16 (n_clips, samples) int16 at 16 kHz;
    logmel (n_clips, frames, 96) float32; patches (n_patches, 187, 96) float32;
    patch_clip (n_patches,) int; patch_start (n_patches,) int (frame index into logmel);
    tf_dense_pre, tf_penultimate (n_patches, 200); tf_logits, tf_taggram (n_patches, 50);
    tf_max_pool, tf_mean_pool (n_patches, 753); versions (str).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
DATA_SHA256 = "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6"
CLIPS = ("mg-1634.opus", "mubert-806.opus", "mlm-2940.opus")
SR = 16000
EXCERPT_S = (2.0, 5.5)  # seconds of each 10 s clip to keep
PATCH_STARTS = (0, 32)  # frames
N_FRAMES = 187


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def get_wheel(wheel: Path | None, tmp: Path) -> Path:
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "musicnn==0.1.0",
                        "-d", str(tmp)], check=True)
        wheel = next(tmp.glob("musicnn-0.1.0-*.whl"))
    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"wheel SHA-256 mismatch: {wheel}")
    return wheel


def frontend(y: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=256, n_mels=96,
                                         center=True, pad_mode="constant").T
    mel = mel.astype(np.float32)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0)).astype(np.float32)


def run_tf(pkg_root: Path, patches: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    import tensorflow as tf

    sys.path.insert(0, str(pkg_root))
    from musicnn import models  # the wheel's own graph definition

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        (logits, _timbral, _temporal, _c1, _c2, _c3, mean_pool, max_pool,
         penultimate) = models.define_model(x, is_training, "MSD_musicnn", 50)
        taggram = tf.nn.sigmoid(logits)
    graph = tf.compat.v1.get_default_graph()
    # dense 1506->200 before its ReLU: the BiasAdd feeding the Relu of the "dense" layer
    dense_pre = graph.get_tensor_by_name("model/dense/BiasAdd:0")
    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    saver = tf.compat.v1.train.Saver()
    saver.restore(sess, str(pkg_root / "musicnn" / "MSD_musicnn") + "/")
    out = sess.run(
        {"dense_pre": dense_pre, "penultimate": penultimate, "logits": logits,
         "taggram": taggram, "max_pool": max_pool, "mean_pool": mean_pool},
        feed_dict={x: patches, is_training: False},
    )
    return {f"tf_{k}": np.asarray(v, dtype=np.float32) for k, v in out.items()}, tf.__version__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=Path, required=True, help="fadtk/test/samples folder")
    ap.add_argument("--wheel", type=Path, default=None, help="musicnn-0.1.0 wheel (else pip download)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("musicnn_tf_reference.npz"))
    args = ap.parse_args()

    import librosa
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        wheel = get_wheel(args.wheel, tmp)
        pkg_root = tmp / "pkg"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(pkg_root)
        if sha256(pkg_root / "musicnn/MSD_musicnn/.data-00000-of-00001") != DATA_SHA256:
            raise SystemExit("MSD_musicnn data SHA-256 mismatch")

        audio, logmels = [], []
        for name in CLIPS:
            y, sr = sf.read(args.samples / name, dtype="float32", always_2d=True)
            y = librosa.resample(y.mean(axis=1), orig_sr=sr, target_sr=SR)
            y = y[int(EXCERPT_S[0] * SR) : int(EXCERPT_S[1] * SR)]
            q = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
            audio.append(q)
            logmels.append(frontend(q.astype(np.float32) / np.float32(32768.0)))
        patch_clip, patch_start, patches = [], [], []
        for ci, lm in enumerate(logmels):
            for s in PATCH_STARTS:
                assert s + N_FRAMES <= lm.shape[0]
                patch_clip.append(ci)
                patch_start.append(s)
                patches.append(lm[s : s + N_FRAMES])
        patches = np.stack(patches).astype(np.float32)
        tf_out, tf_version = run_tf(pkg_root, patches)

    np.savez_compressed(
        args.out,
        clip_ids=np.array([f"fadtk-1.1.0:test/samples/{c}" for c in CLIPS]),
        audio_int16=np.stack(audio),
        logmel=np.stack(logmels),
        patches=patches,
        patch_clip=np.array(patch_clip, dtype=np.int64),
        patch_start=np.array(patch_start, dtype=np.int64),
        versions=np.array(f"tensorflow {tf_version}; librosa {librosa.__version__}; "
                          f"numpy {np.__version__}; excerpt {EXCERPT_S} s"),
        **tf_out,
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
