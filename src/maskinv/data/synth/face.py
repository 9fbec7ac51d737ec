"""The face step of SynthFaces rendering: head and hair, skin marks, facial hair, features.

Every function draws in place on a :class:`Canvas` from the aligned landmarks; ``rng``
calls happen in a fixed order (the order of :func:`draw_face`), so output bytes are stable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .canvas import Canvas, col as _col
from .identity import _FACIAL_HAIR, _N_HAIR_STYLES

__all__ = ["draw_face"]


def draw_face(cv: Canvas, P: dict[str, Any], lm: np.ndarray, ex: dict[str, np.ndarray], expr: dict,
              rng: np.random.Generator, d: float) -> tuple[int, str]:
    """Draw the whole face; returns (hair style, facial hair) used for this image."""
    skin = P["skin"] * rng.uniform(0.97, 1.03)
    hair_rgb = P["hair_rgb"] * rng.uniform(0.85, 1.15)
    style = P["hair_style"]
    if rng.random() < min(0.9, 0.4 * d):  # hair is done differently today
        style = int(rng.integers(0, _N_HAIR_STYLES))
    _draw_head(cv, P, lm, ex, skin, hair_rgb, style)
    _draw_skin_marks(cv, P, lm, ex, skin, expr, rng, d)
    facial_hair = _draw_facial_hair(cv, P, lm, skin, rng, d)
    _draw_features(cv, P, lm, skin, hair_rgb, expr, rng, d)
    return style, facial_hair


def _draw_head(cv: Canvas, P, lm, ex, skin, hair_rgb, style: int) -> None:
    """Long/curly hair behind the head, neck, ears, face outline and the hair on top."""
    import cv2

    img, poly, pt, rad, th = cv.img, cv.poly, cv.pt, cv.rad, cv.th
    AA, SH = cv2.LINE_AA, Canvas.SHIFT
    hair = _col(hair_rgb)
    skin_c = _col(skin)

    # long hair falls behind the head
    if style == 3:
        ho = ex["hair_outer"]
        back = np.concatenate([[ho[0] + [2, 0]], ho, [ho[-1] - [2, 0]], [[ho[-1][0] - 4, 130]], [[ho[0][0] + 4, 130]]])
        cv2.fillPoly(img, [poly(back)], hair, AA, SH)
    elif style == 5:
        ho = ex["hair_outer"]
        c = ho.mean(0)
        big = c + (ho - c) * 1.18
        cv2.fillPoly(img, [poly(np.concatenate([big, [[big[-1][0], lm[2][1]], [big[0][0], lm[14][1]]]]))], hair, AA, SH)

    # neck and ears
    cv2.fillPoly(img, [poly(ex["neck"])], _col(skin * 0.78), AA, SH)
    ear_ax = (rad(3.4 * P["ear_s"]), rad(8.0 * P["ear_s"]))
    for e in ex["ears"]:
        cv2.ellipse(img, pt(e), ear_ax, 0, 0, 360, _col(skin * 0.9), -1, AA, SH)
    # face: jaw outline + forehead
    face = np.concatenate([lm[0:17], ex["skull"]])
    cv2.fillPoly(img, [poly(face)], skin_c, AA, SH)
    # hair on top
    hline = ex["hairline"].copy()
    if style == 0:  # shaved: faint tint on the skull
        cap = np.concatenate([ex["skull"], hline[::-1]])
        cv2.fillPoly(img, [poly(cap)], _col(skin * 0.55 + hair_rgb * 0.45), AA, SH)
    else:
        if style == 2:  # side part: hairline lower on one side
            hline[:, 1] += np.linspace(3, -2, len(hline)) * np.sin(np.linspace(0, np.pi, len(hline)))
        elif style == 4:  # fringe: low jagged hairline
            hline[:, 1] += 9.0 * np.sin(np.linspace(0, np.pi, len(hline))) ** 2
            hline[1::2, 1] += 2.0
        elif style == 6:  # receding
            hline[:, 1] -= 6.0 * np.sin(np.linspace(0, np.pi, len(hline))) ** 8
        elif style == 5:
            hline[:, 1] += 2.0
        hp = np.concatenate([ex["hair_outer"], hline[::-1]])
        cv2.fillPoly(img, [poly(hp)], hair, AA, SH)


def _draw_skin_marks(cv: Canvas, P, lm, ex, skin, expr, rng, d: float) -> None:
    """Blush, nasolabial folds, freckles, moles (sometimes hidden), dimples, chin cleft."""
    import cv2

    img, poly, pt, rad, th = cv.img, cv.poly, cv.pt, cv.rad, cv.th
    AA, SH = cv2.LINE_AA, Canvas.SHIFT
    if P["blush"] > 0.02:
        bl = _col(skin * (1 - P["blush"]) + np.array([220, 90, 90]) * P["blush"])
        for i, j in ((2, 31), (14, 35)):
            c = lm[i] * 0.45 + lm[j] * 0.55
            cv2.ellipse(img, pt(c), (rad(6), rad(4)), 0, 0, 360, bl, -1, AA, SH)
    nl_strength = min(1.0, P["nasolabial"] + expr["smile"] * 0.5)
    if nl_strength > 0.15:
        col = _col(skin * (1 - 0.22 * nl_strength))
        nl = ex["nasolabial"]
        cv2.polylines(img, [poly(nl[:3]), poly(nl[3:])], False, col, th(0.9), AA, SH)
    for q in ex["freckles"]:
        cv2.circle(img, pt(q), rad(0.45), _col(skin * 0.72), -1, AA, SH)
    for q, r in zip(ex["moles"], P["moles"][:, 2] if len(P["moles"]) else []):
        if rng.random() < 0.15 * d:  # hidden by make-up / lighting
            continue
        cv2.circle(img, pt(q), rad(r * 0.6), _col(skin * 0.35), -1, AA, SH)
    if P["dimples"]:
        for i in (48, 54):
            cv2.circle(img, pt(lm[i] + [(-3.2 if i == 48 else 3.2), 0.5]), rad(0.6), _col(skin * 0.75), -1, AA, SH)
    if P["chin_cleft"]:
        cv2.line(img, pt(lm[8] + [0, -5]), pt(lm[8] + [0, -2]), _col(skin * 0.75), th(0.8), AA, SH)


def _draw_facial_hair(cv: Canvas, P, lm, skin, rng, d: float) -> str:
    """Beard / mustache / goatee / stubble of the identity, sometimes regroomed; returns its name."""
    import cv2

    img, poly, pt, rad, th = cv.img, cv.poly, cv.pt, cv.rad, cv.th
    AA, SH = cv2.LINE_AA, Canvas.SHIFT
    fht = _FACIAL_HAIR[P["fh_type"]]
    # grooming changes between photos: trimmed to stubble, or unshaven
    if rng.random() < (0.12 if fht != "none" else 0.06) * d:
        fht = "stubble" if fht != "stubble" else "none"
    info_fh = fht
    if fht != "none":
        dens = float(np.clip(P["fh_density"] * rng.uniform(1 - 0.15 * d, 1 + 0.1 * d), 0.2, 1.0))
        fh = P["fh_rgb"] * dens + skin * (1 - dens)
        stubble = skin * 0.6 + fh * 0.4
        if fht in ("beard", "stubble", "chinstrap"):
            if fht == "chinstrap":  # a band along the jaw line
                inner = lm[3:14] + (np.array([56.0, 85.0]) - lm[3:14]) * 0.18
            else:  # cheeks and chin below the line jaw-point 2 -> mouth -> jaw-point 14
                inner = np.concatenate([[lm[2]], [lm[48] + [-2, 0]], lm[59:54:-1] + [0, 2.0], [lm[54] + [2, 0]], [lm[14]]])
            outer = lm[3:14][::-1] if fht == "chinstrap" else lm[2:15][::-1]
            cv2.fillPoly(img, [poly(np.concatenate([inner, outer]))], _col(stubble if fht == "stubble" else fh), AA, SH)
        if fht in ("mustache", "beard", "mustache_goatee", "stubble"):
            # nostril base down to the upper lip, corner to corner
            mst = np.concatenate([[lm[48] + [-1.5, 1.5]], lm[31:36] + [0, 1.0], [lm[54] + [1.5, 1.5]], lm[53:48:-1] + [0, -0.3]])
            cv2.fillPoly(img, [poly(mst)], _col(stubble if fht == "stubble" else fh), AA, SH)
        if fht in ("goatee", "mustache_goatee"):
            g = np.concatenate([lm[[59, 58, 57, 56, 55]] + [0, 1.0], [lm[9] + [-1, 0]], [lm[8] + [0, 0.5]], [lm[7] + [1, 0]]])
            cv2.fillPoly(img, [poly(g)], _col(fh), AA, SH)
    return info_fh


def _draw_features(cv: Canvas, P, lm, skin, hair_rgb, expr, rng, d: float) -> None:
    """Nose, mouth (open: teeth), eyes with irises, brows."""
    import cv2

    img, poly, pt, rad, th = cv.img, cv.poly, cv.pt, cv.rad, cv.th
    AA, SH = cv2.LINE_AA, Canvas.SHIFT
    # nose: bridge sides, tip, alar base, nostrils
    ns = _col(skin * (1 - 0.16))
    bw = P["bridge_w"]
    for sgn in (-1, 1):
        side = lm[27:31] + [sgn * bw * 0.55, 0]
        side[-1] = lm[31 if sgn < 0 else 35] + [-sgn * 1.0, -2.5]
        cv2.polylines(img, [poly(side)], False, ns, th(0.7), AA, SH)
    cv2.circle(img, pt(lm[30] + [0, 0.8]), rad(P["nose_tip_r"] * 0.75), _col(skin * 1.05), -1, AA, SH)
    cv2.polylines(img, [poly(lm[31:36])], False, _col(skin * 0.7), th(0.9), AA, SH)
    nd = _col(skin * (1 - P["nostril_dark"]) * 0.8)
    for i in (32, 34):
        cv2.ellipse(img, pt(lm[i] + [0, -0.9]), (rad(0.35 * P["nose_w"] * 0.5 + 0.6), rad(0.9)), 0, 0, 360, nd, -1, AA, SH)

    # mouth
    lip = _col(P["lip_rgb"] * (1 + rng.uniform(-0.08, 0.08, 3) * d))
    cv2.fillPoly(img, [poly(lm[48:60])], lip, AA, SH)
    if expr["open"] > 0.12:
        cv2.fillPoly(img, [poly(lm[60:68])], (40, 15, 20), AA, SH)
        teeth = np.concatenate([lm[60:65], lm[[64, 63, 62, 61, 60]] * 0.6 + lm[[64, 65, 66, 67, 60]] * 0.4])
        cv2.fillPoly(img, [poly(teeth)], (228, 222, 205), AA, SH)
    cv2.polylines(img, [poly(np.concatenate([lm[60:65], lm[[65, 66, 67, 60]]]))], True, _col(P["lip_rgb"] * 0.55), th(0.7), AA, SH)

    # eyes
    iris = _col(P["iris_rgb"])
    for base in (36, 42):
        e = lm[base : base + 6]
        cv2.fillPoly(img, [poly(e)], (235, 232, 228), AA, SH)
        c = e.mean(0) + [0, -0.2]
        open_h = np.linalg.norm(e[1] - e[5]) * 0.5
        r = max(0.8, min(2.7, open_h * 1.15))
        cv2.circle(img, pt(c), rad(r), iris, -1, AA, SH)
        cv2.circle(img, pt(c), rad(r * 0.45), (12, 10, 10), -1, AA, SH)
        cv2.polylines(img, [poly(e[[0, 1, 2, 3]])], False, (35, 25, 22), th(1.0), AA, SH)
        cv2.polylines(img, [poly(e[[3, 4, 5, 0]])], False, _col(skin * 0.6), th(0.6), AA, SH)
    # brows
    brow = _col(hair_rgb * 0.8 if hair_rgb.mean() < 140 else hair_rgb * 0.6)
    for sl in (slice(17, 22), slice(22, 27)):
        b = lm[sl]
        tb = P["brow_t"] * np.array([0.8, 1.0, 1.0, 0.95, 0.85])[:, None]
        if sl.start == 22:
            tb = tb[::-1]
        cv2.fillPoly(img, [poly(np.concatenate([b - [0, 0.5] * tb, (b + [0, 0.5] * tb)[::-1]]))], brow, AA, SH)
