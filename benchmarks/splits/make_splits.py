"""Identity splits of the real photos (LFW, RMFD) shared by the real-data study, the mask-realism
measurement and the service's mask classifier. Re-create with

    python -m benchmarks.splits.make_splits ../shared/data

The files are committed; this script documents and reproduces them (it is deterministic: sorted
names, a SHA-256 of each RMFD name decides its half). Rules (``../shared/data/README.md``):

* LFW View 2 (``pairs.txt``, 10 identity-disjoint folds of 600 pairs):
  - ``lfw_val_pairs.txt``  = folds 1-2 (1,200 pairs) -- validation, its people in ``lfw_val_people.txt``;
  - ``lfw_test_pairs.txt`` = folds 6-10 (3,000 pairs) -- test, cross-validated over its 5 folds;
  - ``lfw_train_people.txt`` = the people of folds 3-5 plus the people in no pair, minus the
    held-out names (they appear in an external masked benchmark) and minus RMFD's namesakes.
* RMFD (``rmfd/images/<person>/``): ``rmfd_dev.txt`` / ``rmfd_test.txt``, each person in one half
  by the first byte of sha256(name) (even: dev, odd: test).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HELD_OUT = ("Ben_Affleck", "Floyd_Mayweather", "Imran_Khan", "Joseph_Biden", "Nancy_Pelosi",
            "Pharrell_Williams", "Simon_Cowell", "Liu_Xiaoqing", "Liu_Ye", "Tian_Liang", "Wang_Fei")
HERE = Path(__file__).resolve().parent


def _pair_people(line: str) -> tuple[str, ...]:
    f = line.split()
    return (f[0],) if len(f) == 3 else (f[0], f[2])


def main(data: Path) -> None:
    lines = (data / "lfw" / "pairs.txt").read_text().splitlines()
    n_folds, n = (int(v) for v in lines[0].split())
    body = [ln for ln in lines[1:] if ln.strip()]
    folds = [body[k * 2 * n:(k + 1) * 2 * n] for k in range(n_folds)]
    people = [{p for ln in fold for p in _pair_people(ln)} for fold in folds]
    in_pairs = set().union(*people)
    everyone = sorted(d.name for d in (data / "lfw" / "images").iterdir() if d.is_dir())
    val_people = sorted(people[0] | people[1])
    test_people = people[5] | people[6] | people[7] | people[8] | people[9]
    train = sorted(((people[2] | people[3] | people[4]) | (set(everyone) - in_pairs)) - set(HELD_OUT)
                   - set(val_people) - test_people)
    write = lambda name, rows: (HERE / name).write_text("".join(r + "\n" for r in rows))  # noqa: E731
    write("lfw_val_pairs.txt", [f"2\t{n}"] + folds[0] + folds[1])
    write("lfw_test_pairs.txt", ["5\t" + str(n)] + [ln for f in folds[5:] for ln in f])
    write("lfw_val_people.txt", val_people)
    write("lfw_train_people.txt", train)
    rmfd = sorted(d.name for d in (data / "rmfd" / "images").iterdir() if d.is_dir())
    half = lambda name: hashlib.sha256(name.encode()).digest()[0] % 2  # noqa: E731
    write("rmfd_dev.txt", [p for p in rmfd if half(p) == 0])
    write("rmfd_test.txt", [p for p in rmfd if half(p) == 1])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"))
