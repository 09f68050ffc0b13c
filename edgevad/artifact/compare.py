"""Compare two sets of named outputs with tolerances, Polygraphy-style (numpy only, no torch).

One comparator for the tests, the export parity report (``parity.json``) and ``edgevad bench``::

    result = compare_outputs({"scores": ref}, {"scores": out}, atol=1e-4)
    if not result:
        raise SystemExit(result.summary())
    json.dumps(result.to_dict())

An output passes when every element satisfies ``|candidate - reference| <= atol + rtol *
|reference|`` (numpy's ``isclose`` rule; NaN only matches NaN, an infinity only the same
infinity), the two arrays have the same shape, and the candidate has it at all. Per output the
result keeps the max / mean / median / 99th-percentile absolute error and the max relative error,
so a report shows how close, not only whether.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_TOLERANCES", "ComparisonResult", "OutputComparison", "Tolerance", "compare_outputs",
    "tolerance_for",
]


@dataclass(frozen=True)
class Tolerance:
    """Element-wise bound ``|c - r| <= atol + rtol * |r|``."""

    atol: float
    rtol: float = 0.0

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise ValueError(f"tolerances must be >= 0, got atol={self.atol}, rtol={self.rtol}")


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-5),
}
"""Default tolerance per precision: fp32 is 1e-4 absolute plus 1e-5 of the reference (float32
rounding on features of magnitude ~100, e.g. a randomly initialised 3D CNN, is ~6e-5). INT8 and
FP16 entries come with those exporters."""


def tolerance_for(precision: str) -> Tolerance:
    """The default :class:`Tolerance` of a precision (``ValueError`` for an unknown one)."""
    try:
        return DEFAULT_TOLERANCES[precision]
    except KeyError:
        raise ValueError(f"no default tolerance for precision {precision!r}; "
                         f"known: {', '.join(DEFAULT_TOLERANCES)}") from None


@dataclass(frozen=True)
class OutputComparison:
    """How one named output compares. ``error`` says why it failed when no statistic could be
    computed (missing output, shape mismatch)."""

    name: str
    passed: bool
    atol: float
    rtol: float
    shape: tuple[int, ...] | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    median_abs: float | None = None
    p99_abs: float | None = None
    max_rel: float | None = None
    mismatches: int = 0
    """Elements outside the tolerance."""
    size: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: non-finite statistics become the strings "inf" / "nan" (strict JSON)."""
        d = {k: _json_float(v) for k, v in asdict(self).items()}
        d["shape"] = None if self.shape is None else list(self.shape)
        return d

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: FAIL ({self.error})"
        verdict = "ok" if self.passed else f"FAIL ({self.mismatches}/{self.size} elements)"
        return (f"{self.name}: {verdict} max_abs={self.max_abs:.3g} mean_abs={self.mean_abs:.3g} "
                f"p99_abs={self.p99_abs:.3g} max_rel={self.max_rel:.3g} "
                f"(atol={self.atol:g}, rtol={self.rtol:g})")


@dataclass(frozen=True)
class ComparisonResult:
    """All outputs' comparisons; true when every compared output passed."""

    outputs: dict[str, OutputComparison]
    extra: tuple[str, ...] = field(default=())
    """Candidate outputs the reference does not have (reported, not compared)."""

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs.values())

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failed(self) -> list[str]:
        return [name for name, o in self.outputs.items() if not o.passed]

    @property
    def max_abs(self) -> float | None:
        """Worst max absolute error over the outputs that could be compared."""
        values = [o.max_abs for o in self.outputs.values() if o.max_abs is not None]
        return max(values) if values else None

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "max_abs": _json_float(self.max_abs),
            "outputs": {name: o.to_dict() for name, o in self.outputs.items()},
            "extra": list(self.extra),
        }

    def summary(self) -> str:
        lines = [o.summary() for o in self.outputs.values()]
        if self.extra:
            lines.append(f"not compared (candidate only): {', '.join(self.extra)}")
        return "\n".join(lines)


def _json_float(value):
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _tolerance(name: str, atol: float, rtol: float,
               per_output_tol: Mapping[str, object] | None) -> Tolerance:
    spec = (per_output_tol or {}).get(name)
    if spec is None:
        return Tolerance(atol, rtol)
    if isinstance(spec, Tolerance):
        return spec
    if isinstance(spec, (int, float)):
        return Tolerance(float(spec), rtol)
    if isinstance(spec, Mapping):
        return Tolerance(float(spec.get("atol", atol)), float(spec.get("rtol", rtol)))
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return Tolerance(float(spec[0]), float(spec[1]))
    raise ValueError(f"per_output_tol[{name!r}] must be a number (atol), an (atol, rtol) pair, "
                     f"a dict with atol/rtol or a Tolerance, got {spec!r}")


def _compare_one(name: str, ref: object, cand: object, tol: Tolerance) -> OutputComparison:
    ref = np.asarray(ref)
    if cand is None:
        return OutputComparison(name=name, atol=tol.atol, rtol=tol.rtol, passed=False,
                                shape=tuple(ref.shape), size=int(ref.size),
                                error="missing from the candidate")
    cand = np.asarray(cand)
    if ref.shape != cand.shape:
        return OutputComparison(name=name, atol=tol.atol, rtol=tol.rtol, passed=False,
                                shape=tuple(ref.shape), size=int(ref.size),
                                error=f"shape {tuple(cand.shape)} != reference "
                                      f"{tuple(ref.shape)}")
    if ref.size == 0:
        return OutputComparison(name=name, atol=tol.atol, rtol=tol.rtol, passed=True,
                                shape=tuple(ref.shape), max_abs=0.0, mean_abs=0.0,
                                median_abs=0.0, p99_abs=0.0, max_rel=0.0)
    r = ref.astype(np.float64, copy=False)
    c = cand.astype(np.float64, copy=False)
    close = np.isclose(c, r, atol=tol.atol, rtol=tol.rtol, equal_nan=True)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(c - r)
    # Elements both NaN (or the same infinity) match: error 0. Any other non-finite error counts
    # as infinite, so the statistics never hide it.
    same = (np.isnan(c) & np.isnan(r)) | ((c == r) & ~np.isfinite(r))
    diff = np.where(same, 0.0, np.where(np.isfinite(diff), diff, np.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.abs(r))
    flat = diff.reshape(-1)
    return OutputComparison(
        name=name, atol=tol.atol, rtol=tol.rtol,
        passed=bool(close.all()),
        shape=tuple(ref.shape),
        max_abs=float(flat.max()),
        mean_abs=float(flat.mean()),
        median_abs=float(np.median(flat)),
        p99_abs=float(np.percentile(flat, 99, method="higher")),
        max_rel=float(np.nanmax(rel)),
        mismatches=int((~close).sum()),
        size=int(ref.size),
    )


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    atol: float = 1e-4,
    rtol: float = 0.0,
    per_output_tol: Mapping[str, object] | None = None,
) -> ComparisonResult:
    """Compare every output of ``reference`` with the same-named output of ``candidate``.

    ``per_output_tol`` overrides the tolerance per output name: a number (atol), an
    ``(atol, rtol)`` pair, a ``{"atol": .., "rtol": ..}`` dict or a :class:`Tolerance`.
    A reference output missing from the candidate, or of another shape, fails; candidate-only
    outputs are listed in ``extra``. An empty reference fails (nothing was compared).
    """
    Tolerance(atol, rtol)  # validates
    unknown = set(per_output_tol or ()) - set(reference)
    if unknown:
        raise ValueError(f"per_output_tol names outputs the reference lacks: {sorted(unknown)}")
    outputs = {
        name: _compare_one(name, ref, candidate.get(name),
                           _tolerance(name, atol, rtol, per_output_tol))
        for name, ref in reference.items()
    }
    extra = tuple(name for name in candidate if name not in reference)
    return ComparisonResult(outputs=outputs, extra=extra)
