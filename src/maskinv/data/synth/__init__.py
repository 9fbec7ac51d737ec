"""SynthFaces: a seeded procedural generator of face identities with exact landmarks.

Design (see ``docs/synthfaces.md``):

* **Identity** (:func:`sample_identity`) is a set of parameters drawn from
  ``default_rng([seed, 0x1D, index])`` — identity ``k`` of seed ``s`` is the same face
  whatever else is generated.  Most of the identity signal lives in the **lower face**
  (jaw and chin outline, nose length/width/nostrils/tip, mouth width, lip thickness and
  colour, cupid's bow, facial hair, nasolabial folds, moles and freckles on cheeks and
  chin).  The upper face carries less: skin tone, hair and iris colours come from small
  shared palettes, hair style changes per image with a high probability, and eye/brow
  shape vary over narrow ranges — so a mask over nose, mouth and chin removes a real
  part of the identity (REFERENCE §9, pitfall 2).
* **Per image** (``default_rng([seed, 0x1A, identity, image_index])``): expression (smile,
  open mouth, brow raise, eye openness), head pose (yaw/pitch applied to the 3-D
  landmark model, so the picture and the landmarks move together), a simulated detector
  (noisy 5 points) followed by the similarity alignment onto the ArcFace template, which
  leaves the residual in-plane rotation/scale/shift of a real aligner, illumination
  direction/strength/tint, background, glasses/cap, blur, sensor noise and JPEG quality.
  Backgrounds are smooth two-colour gradients from a shared palette and noise is weak:
  no per-image nuisance is more identifying than the face (pitfall 1).
* **Rendering** draws everything from the posed landmarks with anti-aliased OpenCV
  primitives (sub-pixel ``shift``), at ``supersample`` times the output size when the
  output is small, so the 68 iBUG landmarks and the 5 ArcFace points of every image are
  exact in output pixel coordinates (``constants.template_for_size`` convention).

Modules: :mod:`.identity` (identity sampling), :mod:`.geometry` (expression, pose,
alignment), :mod:`.render` with :mod:`.face` and :mod:`.canvas` (pixels), :mod:`.dataset`
(files on disk).
"""
from __future__ import annotations

from .dataset import generate_dataset, generate_select_split, preview_grid
from .geometry import five_points
from .identity import DIFFICULTIES, FaceIdentity, sample_identities, sample_identity
from .render import encode_jpeg, render_face, render_faces

__all__ = [
    "DIFFICULTIES",
    "FaceIdentity",
    "sample_identity",
    "sample_identities",
    "render_face",
    "render_faces",
    "five_points",
    "encode_jpeg",
    "generate_dataset",
    "generate_select_split",
    "preview_grid",
]
