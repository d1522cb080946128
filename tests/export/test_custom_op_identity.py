"""The MSDA custom op's identity is defined once in Python (:mod:`actionvos.export.trt_plugin`) and agrees with the
C++ plugin (``trt_plugins/msda/msda_plugin.h``) and its written contract (``trt_plugins/msda/README.md``); the
exporter, the ONNX schema and the specs take it from there (no retyped literals in the package)."""

from __future__ import annotations

import re
from pathlib import Path

from actionvos.export.spec import CUSTOM_OPSET_VERSION, build_specs
from actionvos.export.trt_plugin import ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

REPO = Path(__file__).resolve().parents[2]
MSDA = REPO / "trt_plugins" / "msda"


def _cpp_string(text: str, name: str) -> str:
    """Value of ``constexpr char const* <name> = "...";`` in C++ source."""
    m = re.search(rf'constexpr\s+char\s+const\s*\*\s*{name}\s*=\s*"([^"]*)"\s*;', text)
    assert m, f"{name} not found in msda_plugin.h"
    return m.group(1)


def test_header_matches_python():
    header = (MSDA / "msda_plugin.h").read_text()
    assert _cpp_string(header, "kPluginName") == PLUGIN_NAME
    assert _cpp_string(header, "kPluginVersion") == PLUGIN_VERSION
    assert _cpp_string(header, "kPluginNamespace") == PLUGIN_NAMESPACE
    # the plugin and its creator return these constants (not retyped strings): two classes, three getters each
    for getter, const in (("getPluginName", "kPluginName"), ("getPluginVersion", "kPluginVersion"),
                          ("getPluginNamespace", "kPluginNamespace")):
        assert len(re.findall(rf"{getter}\(\)[^{{]*\{{\s*return {const};", header)) == 2, getter
    cpp = (MSDA / "msda_plugin.cpp").read_text()
    assert f'"{PLUGIN_NAME}"' not in cpp and f'"{ONNX_DOMAIN}"' not in cpp


def test_contract_readme_matches_python():
    """The contract names the ONNX domain TensorRT's parser maps to plugins and the node attribute value."""
    readme = (MSDA / "README.md").read_text()
    assert f"domain **`{ONNX_DOMAIN}`**" in readme
    assert f'plugin_version="{PLUGIN_VERSION}"' in readme
    assert PLUGIN_NAME in readme


def test_specs_and_package_use_the_one_definition():
    for spec in build_specs(frames=1, height=96, width=128).values():
        assert (spec.custom_domain, spec.custom_op, spec.custom_version) == (ONNX_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION)
    assert CUSTOM_OPSET_VERSION == 1
    literal = re.compile(r'["\']' + re.escape(ONNX_DOMAIN) + r'["\']')
    retyped = [str(p.relative_to(REPO)) for p in (REPO / "actionvos").rglob("*.py")
               if p.name != "trt_plugin.py" and literal.search(p.read_text(encoding="utf-8"))]
    assert not retyped, f"{ONNX_DOMAIN!r} retyped in {retyped}; import ONNX_DOMAIN from actionvos.export.trt_plugin"
