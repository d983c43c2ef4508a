"""What choosing the epoch on the validation split buys, per classifier of a results workdir.

Every classifier stage of `train.reproduce` exports the epoch with the best validation accuracy
(`valid_history.json` in its folder) instead of its last one. This prints, per stage, the chosen
epoch, the validation accuracy there and at the last epoch, and the mean difference: the
validation points that the choice is worth (the test split is scored only at the chosen epoch,
so this is measured on validation alone).

    python scripts/experiments/epoch_choice.py /root/persist/results3
"""

import json
import sys
from pathlib import Path


def epoch_choices(workdir: Path) -> list[tuple[str, int, int, float, float]]:
    """(stage, chosen epoch, epochs, valid accuracy at the chosen epoch, at the last epoch)
    for every finished stage (in `results.json`, when there is one) with a validation
    history; the chosen epoch is 1-based."""
    rows = []
    results_file = workdir / "results.json"
    finished = json.loads(results_file.read_text()) if results_file.exists() else None
    for history_file in sorted(workdir.glob("*/valid_history.json")):
        if finished is not None and history_file.parent.name not in finished:
            continue  # still training: its last epoch is not the last one yet
        history = json.loads(history_file.read_text())
        epochs = history["epochs"]
        if not epochs or history.get("monitor") != "accuracy":
            continue  # language models choose by loss; nothing to compare here
        best = history["best"]
        rows.append(
            (
                history_file.parent.name,
                best["epoch"] + 1,
                len(epochs),
                best["value"],
                epochs[-1]["accuracy"],
            )
        )
    return rows


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit(__doc__)
    rows = epoch_choices(Path(argv[0]))
    if not rows:
        sys.exit(f"no classifier folder with a valid_history.json under {argv[0]}")
    print("| stage | chosen epoch | valid accuracy, chosen | valid accuracy, last | gain |")
    print("| --- | --- | --- | --- | --- |")
    for name, chosen, total, at_best, at_last in rows:
        gain = 100 * (at_best - at_last)
        print(f"| {name} | {chosen} of {total} | {at_best:.4f} | {at_last:.4f} | {gain:+.1f} |")
    gains = [100 * (b - last) for *_, b, last in rows]
    print(
        f"\nmean gain {sum(gains) / len(gains):+.2f} validation points over {len(rows)} "
        f"classifiers (min {min(gains):+.1f}, max {max(gains):+.1f})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
