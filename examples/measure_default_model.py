"""Measure the embedded default model: the numbers behind the README's default-model table.

    python examples/measure_default_model.py                       # held-out synthetic clips only
    python examples/measure_default_model.py /usr/share/sounds/alsa/*.wav speech/*.wav   # + your recordings

Held out: `--clips` clips of the ten classes and `--other-clips` clips of `other`, drawn with a seed
that neither training (0) nor model selection (1) used, in the recipe's realistic conditions (some
clips shorter than the window); the ten classes again with every clip at full length, with every clip
short, and in the original clean conditions (the README's example files are such clips).
Files: each one's answer on its first window (what `ast-min classify FILE` prints first) and with
`--window` (mean of the softmax scores of every window), and how often the answer is `other`.
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np

from ast_min.classify import Classifier
from ast_min.data import synthetic
from ast_min.features import samples_for_frames
from ast_min.recipes import get_recipe


def held_out(classifier: Classifier, seed: int, clips: int, other_clips: int) -> None:
    n = samples_for_frames(classifier.model.config.max_length)
    options = get_recipe("synthetic").synthetic
    classes = len(synthetic.LABELS_WITH_OTHER)
    other = synthetic.LABELS_WITH_OTHER.index(synthetic.OTHER)
    indices = [i for i in range(clips * classes // (classes - 1) + classes) if i % classes != other][:clips]
    sets = (
        ("realistic (the recipe's set)", options),
        ("realistic, full length", {**options, "short": 0.0}),
        ("realistic, every clip short", {**options, "short": 1.0}),
        ("clean, full length", {**options, "realistic": False, "short": 0.0}),
    )
    for name, kw in sets:
        made = [synthetic.make_clip(seed, i, n, **kw) for i in indices]
        predicted = classifier.scores([w for w, _ in made], 100).argmax(1)
        true = np.array([label for _, label in made])
        said_other = np.mean(predicted == other)
        print(f"ten classes, {name}: accuracy {np.mean(predicted == true):.4f} on {len(made)} clips "
              f"(seed {seed}); answered 'other' on {said_other:.4f}")
    others = [other + classes * k for k in range(other_clips)]
    made = [synthetic.make_clip(seed, i, n, **options)[0] for i in others]
    predicted = classifier.scores(made, 100).argmax(1)
    print(f"'other', realistic: recall {np.mean(predicted == other):.4f} on {len(made)} clips (seed {seed})")
    by_kind = collections.defaultdict(list)
    for i, p in zip(others, predicted):
        by_kind[synthetic.clip_kind(seed, i, n, **options)].append(classifier.labels[p])
    for kind, answers in sorted(by_kind.items()):
        wrong = collections.Counter(a for a in answers if a != synthetic.OTHER).most_common(2)
        print(f"  {kind:<13} recall {answers.count(synthetic.OTHER) / len(answers):.3f} of {len(answers)}; "
              f"else {', '.join(f'{a} {c}' for a, c in wrong) or '-'}")


def files(classifier: Classifier, paths: list[str]) -> None:
    first_other = window_other = 0
    for path in paths:
        first = classifier.classify_file(path, top_k=1)
        whole = classifier.classify_file(path, top_k=1, window=True)
        (label, score), (wlabel, wscore) = first.predictions[0], whole.predictions[0]
        first_other += label == synthetic.OTHER
        window_other += wlabel == synthetic.OTHER
        print(f"{path}\t{first.duration:.2f} s\tfirst window: {label} {score:.2f}\t--window: {wlabel} {wscore:.2f}")
    if paths:
        print(f"'other' on {first_other}/{len(paths)} files (first window), {window_other}/{len(paths)} (--window)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="recordings to classify (any format ast-min classify reads)")
    parser.add_argument("--checkpoint", help="a checkpoint directory (default: the embedded model)")
    parser.add_argument("--seed", type=int, default=20261201, help="seed of the held-out synthetic clips")
    parser.add_argument("--clips", type=int, default=1000, help="held-out clips of the ten classes")
    parser.add_argument("--other-clips", type=int, default=1000, help="held-out clips of 'other'")
    args = parser.parse_args(argv)
    classifier = Classifier.load(args.checkpoint, device="cpu")
    if args.clips:
        held_out(classifier, args.seed, args.clips, args.other_clips)
    files(classifier, args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
