"""Per-output comparison of a graph's outputs with a reference, using the spec's tolerances (Polygraphy-style).

NumPy only: usable by the parity tests, the benchmark and a torch-free runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actionvos.export.spec import ExportSpec

__all__ = ["OutputDiff", "compare_outputs", "assert_outputs_close"]


@dataclass(frozen=True)
class OutputDiff:
    """Comparison of one output.

    Attributes:
        name: output name. ok: within tolerance everywhere (and same shape/dtype kind).
        max_abs: largest ``|actual - expected|``. max_excess: largest ``|diff| - (atol + rtol*|expected|)``
            (<= 0 when ok). atol, rtol: the tolerance used. note: shape/dtype problems.
    """

    name: str
    ok: bool
    max_abs: float
    max_excess: float
    atol: float
    rtol: float
    note: str = ""

    def __str__(self) -> str:
        status = "ok" if self.ok else "FAIL"
        return (f"{self.name}: {status} max|diff|={self.max_abs:.3g} (atol {self.atol:g}, rtol {self.rtol:g})"
                + (f" {self.note}" if self.note else ""))


def compare_outputs(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], spec: ExportSpec,
                    precision: str = "fp32") -> list[OutputDiff]:
    """Compare every output of ``spec`` present in ``expected``.

    Args:
        actual, expected: name → array (``expected`` from PyTorch).
        spec: supplies the tolerances (``spec.tolerances[precision]``).
        precision: ``fp32`` or ``fp16``.
    Returns:
        One :class:`OutputDiff` per compared output, in spec order.
    Raises:
        KeyError: an output of ``expected`` is missing from ``actual``.
    """
    diffs = []
    for name in spec.output_names:
        if name not in expected:
            continue
        a, e = np.asarray(actual[name]), np.asarray(expected[name])
        tol = spec.tolerance(name, precision)
        if a.shape != e.shape:
            diffs.append(OutputDiff(name, False, float("inf"), float("inf"), tol.atol, tol.rtol,
                                    f"shape {a.shape} vs expected {e.shape}"))
            continue
        if e.dtype == np.bool_ or a.dtype == np.bool_:
            n = int(np.count_nonzero(a.astype(bool) != e.astype(bool)))
            diffs.append(OutputDiff(name, n == 0, float(n), float(n), 0.0, 0.0, f"{n} differing elements" if n else ""))
            continue
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        if not np.all(np.isfinite(a64)):
            diffs.append(OutputDiff(name, False, float("inf"), float("inf"), tol.atol, tol.rtol, "non-finite values"))
            continue
        d = np.abs(a64 - e64)
        excess = d - (tol.atol + tol.rtol * np.abs(e64))
        max_excess = float(excess.max()) if excess.size else 0.0
        diffs.append(OutputDiff(name, max_excess <= 0, float(d.max()) if d.size else 0.0, max_excess, tol.atol,
                                tol.rtol))
    return diffs


def assert_outputs_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], spec: ExportSpec,
                         precision: str = "fp32") -> list[OutputDiff]:
    """:func:`compare_outputs` that raises ``AssertionError`` listing every output when one fails."""
    diffs = compare_outputs(actual, expected, spec, precision)
    if not diffs:
        raise AssertionError(f"{spec.role}: no outputs compared")
    if not all(d.ok for d in diffs):
        raise AssertionError(f"{spec.role} parity ({precision}):\n  " + "\n  ".join(str(d) for d in diffs))
    return diffs
