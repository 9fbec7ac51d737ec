"""``maskinv gallery``: 1:N search in a SQLite gallery (add, search, evaluate, list, remove).

Exit codes: ``add``/``search``/``evaluate`` go on past images that cannot be read or show no face:
0 all embedded, 1 some skipped (each named on stderr; ``add --tree``: also photos already enrolled),
2 error (with ``--strict``: the first such image). ``list``/``remove``: 0 success, 2 error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from maskinv.cli import args as A
from maskinv.cli.infer_common import (add_batch_args, add_json_arg, add_model_and_face_args, check_thresholds_arg,
                                      embed_images, model_from_args, report_misses)
from maskinv.masks.protocols import DEFAULT_PROTOCOL, PROBE_REF, PROTOCOLS


EVALUATE_DESCRIPTION = (
    "Search every probe photo of FOLDER (FOLDER/<person>/<photo>; only those in --probe-list when given) in "
    "the gallery and report rank-k identification rates of the probes whose person is enrolled and FNIR at FPIR "
    "(non-mated searches: probes of people not enrolled, and every enrolled probe searched without its own "
    "person). Results on stdout; --store keeps the FPIR thresholds in the gallery for `gallery search --fpir`.")


def register(subparsers) -> None:
    """The ``gallery`` command and its actions (add, search, evaluate, list, remove)."""
    p = subparsers.add_parser("gallery", help="1:N search: add, search, list, remove identities in a SQLite gallery")
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION")
    a = gsub.add_parser("add", help="enrol images of one identity, or a folder tree (one sub-folder per person)",
                        description="Enrol photos: `gallery add DB NAME IMAGE...` for one person, or "
                                    "`gallery add DB --tree FOLDER` for everybody at once (FOLDER/<person>/<photo>). "
                                    "A photo already enrolled (an identical template) is refused (one person) or "
                                    "skipped and listed (--tree).")
    a.add_argument("db", type=A.output_file, help="gallery database (SQLite; created if missing)")
    a.add_argument("name", nargs="?", default=None, help="identity name (not with --tree)")
    a.add_argument("images", nargs="*", metavar="IMAGE", type=A.existing_file, help="photos of this identity")
    a.add_argument("--tree", metavar="FOLDER", type=A.existing_dir, default=None,
                   help="enrol every sub-folder of FOLDER as one identity (its name), all its photos")
    a.add_argument("--skip-list", metavar="FILE", type=A.existing_file, default=None,
                   help="with --tree: photos not to enrol (Name/photo.jpg or a stem per line), e.g. the masked ones "
                        "kept as probes")
    add_model_and_face_args(a)
    add_batch_args(a)
    a.set_defaults(func=_cmd_gallery_add)
    s = gsub.add_parser("search", help="top-k identities for each probe image")
    s.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    s.add_argument("images", nargs="+", metavar="IMAGE", type=A.existing_file, help="probe photos")
    s.add_argument("-k", type=A.positive_int, default=5, help="matches per probe (default 5)")
    t = s.add_mutually_exclusive_group()
    t.add_argument("--threshold", type=A.cosine, default=None,
                   help="best score below this cosine -> the answer is 'unknown' (open-set search)")
    t.add_argument("--fpir", type=A.probability, default=None,
                   help="use the threshold `gallery evaluate --store` measured for this false-positive "
                        "identification rate")
    t.add_argument("--fmr", type=A.probability, default=None,
                   help="use the 1:1 threshold calibrated at this false-match rate (`maskinv calibrate`; "
                        "per comparison: a gallery of N people false-matches more often)")
    s.add_argument("--protocol", choices=(*PROTOCOLS, PROBE_REF), default=DEFAULT_PROTOCOL,
                   help="with --fmr: the calibration scenario (default mu)")
    s.add_argument("--thresholds", metavar="PATH", type=A.existing_file, default=None,
                   help="with --fmr: the thresholds file (default: beside the model; dlib has none)")
    add_model_and_face_args(s)
    add_json_arg(s, "the matches")
    add_batch_args(s)
    s.set_defaults(func=_cmd_gallery_search)
    ev = gsub.add_parser("evaluate", help="1:N accuracy of a gallery: rank-1/rank-k and FNIR at FPIR for probe photos",
                         description=EVALUATE_DESCRIPTION)
    ev.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    ev.add_argument("folder", metavar="FOLDER", type=A.existing_dir, help="probe photos, one sub-folder per person")
    ev.add_argument("--probe-list", metavar="FILE", type=A.existing_file, default=None,
                    help="only these photos are probes (Name/photo.jpg or a stem per line), e.g. the masked ones")
    ev.add_argument("--rank", type=A.positive_int, action="append", default=None, help="rank k to report (default 1 and 5)")
    ev.add_argument("--fpir", type=A.probability, action="append", default=None,
                    help="FPIR to report FNIR at (repeatable; default 0.1, 0.01, 0.001)")
    ev.add_argument("--store", action="store_true", help="store the thresholds at --fpir in the gallery")
    add_json_arg(ev, "the metrics")
    add_model_and_face_args(ev)
    add_batch_args(ev)
    ev.set_defaults(func=_cmd_gallery_evaluate)
    ls = gsub.add_parser("list", help="identities and template counts")
    ls.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    ls.set_defaults(func=_cmd_gallery_list)
    rm = gsub.add_parser("remove", help="delete an identity")
    rm.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    rm.add_argument("name", help="identity name")
    rm.set_defaults(func=_cmd_gallery_remove)
    p.set_defaults(func=lambda args, _p=p: (_p.print_help(sys.stderr), 2)[1])


def _tree_photos(folder, skip_list=None, keep_list=None) -> tuple[list[Path], list[str]]:
    """(photos, person of each) of FOLDER/<person>/<photo>, minus ``skip_list`` / only ``keep_list``."""
    import numpy as np

    from maskinv.data.folders import scan_image_folder

    classes, paths, labels = scan_image_folder(folder)
    keys = [Path(q).relative_to(folder).as_posix() for q in paths]
    sel = np.ones(len(paths), bool)
    if skip_list or keep_list:
        from maskinv.evaluate.probe_ref import read_probe_list

        if skip_list:
            sel &= ~read_probe_list(skip_list, keys)
        if keep_list:
            sel &= read_probe_list(keep_list, keys)
    return [Path(paths[i]) for i in np.flatnonzero(sel)], [classes[int(labels[i])] for i in np.flatnonzero(sel)]


def _cmd_gallery_add(args) -> int:
    from maskinv.errors import ConfigError
    from maskinv.gallery import Gallery

    if args.tree is not None:
        if args.name is not None or args.images:
            raise ConfigError("give either --tree FOLDER or NAME IMAGE..., not both")
        photos, people = _tree_photos(args.tree, skip_list=args.skip_list)
        if not photos:
            raise ConfigError(f"{args.tree}: no photos to enrol")
        args.images = [str(q) for q in photos]
    else:
        if args.skip_list:
            raise ConfigError("--skip-list applies to --tree")
        if args.name is None or not args.images:
            raise ConfigError("give NAME IMAGE... (one person) or --tree FOLDER (one sub-folder per person)")
        people = [args.name] * len(args.images)
    m = model_from_args(args)
    with Gallery(args.db, create=False) if Path(args.db).is_file() else _nullgallery() as g0:
        if g0 is not None:
            g0.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
    r = embed_images(args, m)
    if not len(r.embeddings):  # nothing to enrol: leave the gallery (or its absence) as it was
        return report_misses(args, r, f"nothing added to {args.db}")
    dup_lines: list[str] = []
    added: dict[str, int] = {}
    with Gallery(args.db, fingerprint=m.fingerprint, embedding_size=m.embedding_size) as g:
        if args.tree is None:
            ids = g.add(args.name, r.embeddings, sources=r.sources, fingerprint=m.fingerprint)
            added[args.name] = len(ids)
        else:
            import numpy as np

            who = np.array([people[i] for i in r.indices])
            for name in dict.fromkeys(who):
                rows = np.flatnonzero(who == name)
                ids = g.add(name, r.embeddings[rows], sources=[r.sources[i] for i in rows],
                            fingerprint=m.fingerprint, on_duplicate="skip")
                added[name] = len(ids)
                dup_lines += [d["reason"] for d in g.skipped_duplicates]
        total = len(g)
    n = sum(added.values())
    if args.tree is None:
        print(f"{args.db}: added {n} template(s) for {args.name!r} ({total} templates in the gallery)")
    else:
        print(f"{args.db}: added {n} template(s) for {sum(1 for v in added.values() if v)} people from {args.tree} "
              f"({total} templates in the gallery)")
    for line in dup_lines:
        print(f"maskinv gallery add: skipped {line}", file=sys.stderr)
    rc = report_misses(args, r, f"{n} template(s) added")
    return 1 if dup_lines else rc


class _nullgallery:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _search_threshold(args, m, g):
    """(threshold, where it came from) for ``gallery search``, or (None, None)."""
    if args.threshold is not None:
        return float(args.threshold), "explicit"
    if args.fpir is not None:
        t = g.fpir_threshold(args.fpir)
        at = g.meta().get(f"threshold@fpir={args.fpir:g}.templates")
        if at is not None and int(at) != len(g):
            print(f"maskinv: note: the FPIR {args.fpir:g} threshold was measured with {at} templates, the gallery "
                  f"now holds {len(g)}; run `maskinv gallery evaluate ... --store` again", file=sys.stderr)
        return t, f"FPIR {args.fpir:g} (gallery evaluate)"
    if args.fmr is not None:
        from maskinv.errors import ConfigError
        from maskinv.thresholds import lookup, thresholds_path

        path = args.thresholds or (thresholds_path(m.path) if m.path else None)
        if path is None:
            raise ConfigError("this model has no file beside it to hold thresholds (e.g. dlib); pass --thresholds PATH")
        e = lookup(path, m.fingerprint, fmr=args.fmr, protocol=args.protocol, flip=args.flip)
        return float(e["threshold"]), f"1:1 FMR {args.fmr:g} ({args.protocol}, calibrated)"
    return None, None


def _cmd_gallery_search(args) -> int:
    from maskinv.gallery import Gallery

    from maskinv.gallery import UNKNOWN

    check_thresholds_arg(args)
    m = model_from_args(args)
    with Gallery(args.db, create=False) as g:
        g.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
        thr, thr_src = _search_threshold(args, m, g)
        r = embed_images(args, m)
        results = g.search(r.embeddings, k=args.k, fingerprint=m.fingerprint) if len(r.embeddings) else []
    found = dict(zip(r.indices, results))

    def answer(hits):
        if thr is None:
            return None
        return hits[0].name if hits and hits[0].score >= thr else UNKNOWN

    if args.json:  # every input, in order; a skipped one carries its error instead of matches
        missed = {x.index: x for x in r.misses}
        extra = {} if thr is None else {"threshold": thr, "threshold_source": thr_src}
        print(json.dumps([{"image": str(im), "matches": [h.to_dict() for h in found[i]],
                           **({"answer": answer(found[i])} if thr is not None else {}), **extra} if i in found else
                          {"image": str(im), "matches": None, "error": missed[i].reason}
                          for i, im in enumerate(args.images)], indent=2))
    else:
        for i, im in enumerate(args.images):
            if i not in found:
                continue
            if thr is None:
                print(f"{im}:")
            else:
                print(f"{im}: {answer(found[i])}  (threshold {thr:.4f}, {thr_src})")
            for rank, h in enumerate(found[i], 1):
                print(f"  {rank}. {h.name}  {h.score:.4f}")
    return report_misses(args, r, f"{len(found)} searched")


def _cmd_gallery_evaluate(args) -> int:
    from maskinv.gallery import Gallery, identification_metrics

    ranks = sorted(set(args.rank or (1, 5)))
    fpirs = sorted(set(args.fpir or (0.1, 0.01, 0.001)), reverse=True)
    photos, people = _tree_photos(args.folder, keep_list=args.probe_list)
    if not photos:
        from maskinv.errors import ConfigError

        raise ConfigError(f"{args.folder}: no probe photos")
    args.images = [str(q) for q in photos]
    m = model_from_args(args)
    with Gallery(args.db, create=False) as g:
        g.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
        r = embed_images(args, m)
        S, names = g.identity_scores(r.embeddings, fingerprint=m.fingerprint)
        res = identification_metrics(S, names, [people[i] for i in r.indices], ranks=ranks, fpirs=fpirs)
        if args.store:
            for f, t in res["threshold_at_fpir"].items():
                if t is not None:
                    g.set_meta(f"threshold@fpir={f:g}", repr(t))
                    g.set_meta(f"threshold@fpir={f:g}.templates", str(len(g)))
    res.update(probes=len(photos), skipped=len(r.misses), gallery=str(args.db))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{args.db}: {res['num_identities']} people; {res['num_probes']} probes searched "
              f"({res['num_mated']} of enrolled people, {res['num_nonmated_searches']} non-mated searches)")
        for k, v in res["rank"].items():
            print(f"rank-{k}".ljust(18) + f"{100 * v:.2f} %")
        for f in fpirs:
            v, t = res["fnir_at_fpir"][f], res["threshold_at_fpir"][f]
            if v is None:
                print(f"FNIR @ FPIR {f:g}".ljust(18) + f"n/a ({res['undefined'][f'fnir_at_fpir[{f:g}]']})")
            else:
                print(f"FNIR @ FPIR {f:g}".ljust(18) + f"{100 * v:.2f} % (threshold {t:.4f})"
                      + ("  stored" if args.store else ""))
    return report_misses(args, r, f"{len(r.indices)} searched")


def _cmd_gallery_list(args) -> int:
    from maskinv.gallery import Gallery

    with Gallery(args.db, create=False) as g:
        rows = g.identities()
        meta = g.meta()
    print(f"{args.db}: {len(rows)} identities, model {meta.get('model_fingerprint', '?')[:16]}..., "
          f"{meta.get('embedding_size', '?')}-d")
    for name, n in rows:
        print(f"  {name}\t{n}")
    return 0


def _cmd_gallery_remove(args) -> int:
    from maskinv.gallery import Gallery

    with Gallery(args.db, create=False) as g:
        n = g.remove(args.name)
    print(f"{args.db}: removed {args.name!r} ({n} templates)")
    return 0
