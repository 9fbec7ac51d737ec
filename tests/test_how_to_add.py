"""docs/architecture.md "How to add ...": each list of files is complete. A toy mask kind and a toy
protocol are added to a copy of the package by editing exactly the files the doc lists, and reach
the CLI and evaluation in a fresh interpreter (their tables are built at import, so a runtime
registration would not show what a contributor has to edit). The toy recogniser and detector
(one registration each) are tests/test_recognizer.py's."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "maskinv"
DOC = ROOT / "docs" / "architecture.md"

#: The edits of each "How to add" list: file (relative to src/maskinv) -> [(anchor, replacement)].
MASK_KIND_EDITS = {
    "masks/kinds.py": [
        # the MaskKind row, appended (the order fixes the kinds' bank seeds)
        ('    MaskKind("paper", ((128, 128, 128),), 1.0, 0.0, random=False, below_eye=False),\n',
         '    MaskKind("paper", ((128, 128, 128),), 1.0, 0.0, random=False, below_eye=False),\n'
         '    MaskKind("toy", ((200, 40, 40),), 0.5, 0.0, random=False),\n'),
        # its outline branch in build_outline
        ("    else:  # pragma: no cover - paper mode has its own renderer\n",
         "    elif kind == \"toy\":  # a diamond\n"
         "        ctrl, sharp = [top_c, tr, bot_c, tl], [True] * 4\n"
         "        loop_pts = [(tr, a.ear_r, None), (tl, a.ear_l, None)]\n"
         "    else:  # pragma: no cover - paper mode has its own renderer\n"),
    ],
    "masks/layers.py": [  # its dome height in the shading table
        ('"wide": 0.3, "round": 0.5}[p["kind"]]', '"wide": 0.3, "round": 0.5, "toy": 0.4}[p["kind"]]'),
    ],
}
PROTOCOL_EDITS = {
    "masks/protocols.py": [  # one row of PROTOCOL_TABLE: U-M, the first image (the reference) masked
        ('    Protocol(MM, "M-M", "both masked (independent masks)", True, True),\n',
         '    Protocol(MM, "M-M", "both masked (independent masks)", True, True),\n'
         '    Protocol("um", "U-M", "the first image of every pair masked", True, False),\n'),
    ],
}


def doc_list(title: str) -> set[str]:
    """The files (``src/maskinv/...`` paths in backticks, made relative) of the doc's "How to add" list ``title``."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"^### How to add {re.escape(title)}\n(.*?)(?=^#)", text, re.S | re.M)
    assert m, f"docs/architecture.md has no '### How to add {title}' section"
    items = re.findall(r"^\d+\. (.*(?:\n {3}.*)*)", m.group(1), re.M)  # the numbered items, continuation lines included
    return {f for item in items for f in re.findall(r"`src/maskinv/([\w/]+\.py)`", item)}


@pytest.mark.parametrize("title,edits", [("a mask kind", MASK_KIND_EDITS), ("a protocol", PROTOCOL_EDITS)])
def test_doc_lists_the_files_the_test_edits(title, edits):
    assert doc_list(title) == set(edits)


def patched_package(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """A copy of ``src/maskinv`` under ``tmp_path/src`` with ``edits`` applied (each anchor exactly once)."""
    dst = tmp_path / "src" / "maskinv"
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, pairs in edits.items():
        text = (dst / rel).read_text(encoding="utf-8")
        for anchor, new in pairs:
            assert text.count(anchor) == 1, f"{rel}: the doc's edit point moved: {anchor!r}"
            text = text.replace(anchor, new)
        (dst / rel).write_text(text, encoding="utf-8")
    return dst.parent


def run_python(src: Path, code: str, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_toy_mask_kind_reaches_the_cli_and_evaluation(tmp_path):
    src = patched_package(tmp_path, MASK_KIND_EDITS)
    got = run_python(src, """
        import json, numpy as np, cv2
        import maskinv
        from maskinv.cli import main
        from maskinv.masks import MASK_KINDS, RANDOM_KINDS, apply_mask
        from maskinv.evaluate.protocols import masked_images
        assert maskinv.__file__.startswith(%r), maskinv.__file__
        img = np.full((112, 112, 3), 170, np.uint8)
        cv2.imwrite("face.png", img)
        rc = main(["mask", "face.png", "out.png", "--kind", "toy", "--seed", "3"])
        out = cv2.imread("out.png")[:, :, ::-1]
        pairs = np.stack([img] * 4)
        m = masked_images(pairs, ("mu",), 0, "toy")
        res = apply_mask(img, rng=0, kind="toy")
        print(json.dumps({"kinds": list(MASK_KINDS), "random": list(RANDOM_KINDS), "rc": rc,
                          "changed": int((out != img).any(axis=2).sum()), "kind": res.params["kind"],
                          "probe_masked": bool((m[1::2] != pairs[1::2]).any()),
                          "refs_clean": bool((m[0::2] == pairs[0::2]).all())}))
    """ % str(src), tmp_path)
    assert got["kinds"][-1] == "toy" and "toy" not in got["random"]  # opt-in, like paper: random draws unchanged
    assert got["rc"] == 0 and got["changed"] > 500 and got["kind"] == "toy"
    assert got["probe_masked"] and got["refs_clean"]


@pytest.mark.slow
def test_toy_protocol_reaches_the_cli_and_evaluation(tmp_path):
    src = patched_package(tmp_path, PROTOCOL_EDITS)
    got = run_python(src, """
        import json, numpy as np, torch
        from maskinv.cli import main
        from maskinv.data.bins import decode_bin, save_bin
        from maskinv.evaluate import evaluate_models, metrics_of
        from maskinv.masks import mask_pair_images
        from maskinv.masks.protocols import MASKED_PROTOCOLS, PROTOCOLS, parse_protocols
        from maskinv.models import get_model
        from maskinv.utils.images import encode_image

        rng = np.random.default_rng(0)
        imgs = rng.integers(0, 256, (16, 112, 112, 3), dtype=np.uint8)
        save_bin("b.bin", [encode_image(i, "png") for i in imgs], [True, False] * 4)
        rc = main(["mask-bin", "b.bin", "um.bin", "--protocol", "um", "--seed", "1", "--format", "png"])
        got, _ = decode_bin("um.bin")
        net = get_model("r18", width_mult=0.125, embedding_size=16, input_size=112, seed=0)
        doc = evaluate_models({"m": net}, {"b": "b.bin"}, ("uu", "mu", "um"), seed=1, precision="fp32",
                              plots=False, scores=True)
        sc = {p: metrics_of(doc, "m", "b", p) for p in ("uu", "mu", "um")}
        print(json.dumps({"protocols": list(PROTOCOLS), "masked": list(MASKED_PROTOCOLS),
                          "parsed": list(parse_protocols("U-M,uu")), "rc": rc,
                          "refs_masked": bool((got[0::2] != imgs[0::2]).any()),
                          "probes_clean": bool((got[1::2] == imgs[1::2]).all()),
                          "same_as_mm_refs": bool((got[0::2] == mask_pair_images(imgs, "mm", 1)[0::2]).all()),
                          "scores": {p: [float(x) for x in sc[p]["scores"]] for p in sc}}))
    """, tmp_path)
    assert got["protocols"] == ["uu", "mu", "mm", "um"] and "um" in got["masked"]
    assert got["parsed"] == ["uu", "um"] and got["rc"] == 0
    assert got["refs_masked"] and got["probes_clean"] and got["same_as_mm_refs"]
    # scored on its own sides: the masked references give it other scores than U-U's and M-U's
    sc = got["scores"]
    assert len(sc["um"]) == 8 and sc["um"] != sc["uu"] and sc["um"] != sc["mu"]


def test_layout_names_every_module():
    """The layout block at the top of docs/architecture.md names every module and package of the tree."""
    block = DOC.read_text(encoding="utf-8").split("```", 2)[1]
    words = set(re.findall(r"[\w.]+", block))
    missing = [str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py"))
               if p.name != "__init__.py" and p.name not in words and p.stem not in words]
    missing += [f"{p.relative_to(SRC)}/" for p in sorted(SRC.rglob("__init__.py"))
                if p.parent != SRC and f"{p.parent.name}/" not in block]
    assert missing == [], f"docs/architecture.md's layout does not name: {missing}"
