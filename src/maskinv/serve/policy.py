"""Which threshold a decision uses, and why.

* The probe's condition comes from the mask classifier: ``masked`` / ``unmasked`` / ``unsure``.
* Verification against an unmasked reference (every enrolment is unmasked: masked enrolment
  photos are refused): a masked probe is judged by the M-U threshold calibrated at the
  operator's FMR, an unmasked one by the U-U threshold, an unsure one by the stricter (higher)
  of the two. Two uploaded photos: M-U when exactly one is masked, U-U when neither is; both
  masked has no calibrated protocol here, so the stricter threshold applies.
* Identification over N enrolled identities: the operator's FPIR (chance that an impostor
  probe matches *anyone*) needs a per-comparison FMR of ``1 - (1 - FPIR) ** (1 / N)``; the
  threshold for it is read from the calibration's impostor scores
  (:func:`maskinv.thresholds.threshold_for_fmr`). When the calibration cannot resolve that FMR
  (too few impostor pairs) the request is refused rather than answered with an invented number.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..masks.protocols import MU, UU, title
from ..thresholds import lookup, threshold_for_fmr
from .errors import ServeError

__all__ = ["Policy", "Chosen"]


@dataclass
class Chosen:
    threshold: float
    protocol: str            # "uu" | "mu" | "strict"
    fmr: float               # the per-comparison FMR the threshold stands for (calibration)
    reason: str

    def to_dict(self) -> dict:
        return {"value": round(self.threshold, 6), "protocol": self.protocol, "fmr": self.fmr, "why": self.reason}


class Policy:
    def __init__(self, thresholds_file: str | Path, fingerprint: str, *, fmr: float, fpir: float):
        self.file = Path(thresholds_file)
        self.fmr = float(fmr)
        self.fpir = float(fpir)
        if not 0 < self.fpir < 1:
            raise ConfigError(f"FPIR must lie in (0, 1), got {fpir}")
        self.uu = lookup(self.file, fingerprint, fmr=fmr, protocol=UU, flip=None)
        self.mu = lookup(self.file, fingerprint, fmr=fmr, protocol=MU, flip=None)

    def describe(self) -> dict:
        def e(x):
            return {"threshold": x["threshold"], "fmr": x["fmr"], "fmr_achieved": x.get("fmr_achieved"),
                    "bench": (x.get("bench") or {}).get("bench") or (x.get("bench") or {}).get("path"),
                    "test_check": x.get("check")}
        return {"file": str(self.file), "fmr": self.fmr, "fpir": self.fpir, UU: e(self.uu), MU: e(self.mu)}

    def _strict(self, uu: float, mu: float, fmr: float, why: str) -> Chosen:
        return Chosen(max(uu, mu), "strict", fmr, f"{why}: the stricter of U-U ({uu:.4f}) and M-U ({mu:.4f})")

    def verify(self, probe: str, reference: str = "unmasked") -> Chosen:
        uu, mu = float(self.uu["threshold"]), float(self.mu["threshold"])
        f = self.fmr
        if "unsure" in (probe, reference):
            return self._strict(uu, mu, f, "the mask classifier is unsure")
        masked = (probe == "masked") + (reference == "masked")
        if masked == 0:
            return Chosen(uu, UU, f, f"both faces unmasked: U-U threshold calibrated at FMR {f:g}")
        if masked == 1:
            return Chosen(mu, MU, f, f"one face masked, one unmasked: M-U threshold calibrated on real masks at FMR {f:g}")
        return self._strict(uu, mu, f, "both faces masked (no M-M calibration)")

    def identify(self, probe: str, n: int) -> tuple[Chosen, dict]:
        """The threshold for a probe against ``n`` enrolled identities, and the FPIR arithmetic."""
        n = max(1, int(n))
        need = 1.0 - (1.0 - self.fpir) ** (1.0 / n)
        got = {}
        for name, e in ((UU, self.uu), (MU, self.mu)):
            tail, nimp = e.get("impostor_tail"), (e.get("bench") or {}).get("num_impostor")
            t = threshold_for_fmr(tail, int(nimp), need) if tail and nimp else None
            if t is None:
                raise ServeError(409, "fpir_unresolved",
                                 f"FPIR {self.fpir:g} over {n} identities needs FMR {need:.2e} per comparison; the "
                                 f"{title(name)} calibration ({nimp or 0} impostor pairs) cannot resolve it: "
                                 "calibrate on more impostor pairs or raise --fpir")
            got[name] = t
        info = {"fpir": self.fpir, "gallery_size": n, "fmr_per_comparison": need}
        if probe == "masked":
            return Chosen(got[MU], MU, need, f"masked probe: M-U threshold at FMR {need:.2e} = FPIR {self.fpir:g} over {n} identities"), info
        if probe == "unmasked":
            return Chosen(got[UU], UU, need, f"unmasked probe: U-U threshold at FMR {need:.2e} = FPIR {self.fpir:g} over {n} identities"), info
        return self._strict(got[UU], got[MU], need, "the mask classifier is unsure"), info
