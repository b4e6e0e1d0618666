"""The standalone samplers' copies of the sampling controls agree with `SamplingControls`: the same names in the
signature's order, the same values that turn a control off, the same values accepted (export/sample_tflite.py,
which needs no keras-makemore, and the web page's export/web/makemore.js and page.js)."""

import dataclasses
import importlib.util
import json
import math
import re
import shutil
import subprocess

import pytest
from conftest import ROOT

from keras_makemore.errors import UserError
from keras_makemore.sampling.controls import SamplingControls

PROBES = {
    "temperature": [-1.0, 0.0, 1e-7, 1e-6, 0.5, 1.0, 3.0, math.inf, math.nan],
    "top_k": [-1, 0, 1, 5, 2**31 - 1, 2**31],
    "top_p": [-0.1, 0.0, 0.5, 1.0, 1.5, math.nan],
    "min_length": [-1, 0, 3, 2**31 - 1],
    "max_length": [-1, 0, 1, 10, 2**31 - 1],
}


def _off(name: str):
    """The value of the `generate` input that leaves control `name` off."""
    field = {f.name: f for f in dataclasses.fields(SamplingControls)}[name]
    return field.default if field.default is not None else field.metadata["off"]


def _accepted(name: str, value) -> bool:
    """Whether keras-makemore takes `value` for control `name` as a `generate` input: its off value, or a valid one."""
    if value == _off(name):
        return True
    try:
        SamplingControls(**{name: value})
    except UserError:
        return False
    return value <= 2**31 - 1 if isinstance(value, int) else True


@pytest.fixture(scope="module")
def standalone():
    spec = importlib.util.spec_from_file_location("sample_tflite", ROOT / "export" / "sample_tflite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_tflite_knows_every_control_in_order_with_its_off_value(standalone):
    assert tuple(standalone.CONTROLS) == SamplingControls.names()
    for name, (kind, off, _, _) in standalone.CONTROLS.items():
        assert off == _off(name) and type(off) is kind, name


@pytest.mark.parametrize("name", PROBES)
def test_sample_tflite_accepts_what_keras_makemore_accepts(standalone, name):
    check = standalone.CONTROLS[name][2]
    for value in PROBES[name]:
        assert bool(check(value)) == _accepted(name, value), (name, value)


def test_the_web_page_knows_every_scalar_control_with_its_off_value():
    source = (ROOT / "export" / "web" / "makemore.js").read_text(encoding="utf-8")
    table = re.search(r"const CONTROLS_OFF = \{([^}]*)\}", source).group(1)
    off = {key.strip(): float(value) for key, value in (pair.split(":") for pair in table.split(","))}
    scalars = [f.name for f in dataclasses.fields(SamplingControls) if not f.metadata["per_character"]]
    assert list(off) == scalars
    assert off == {name: _off(name) for name in scalars}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_web_page_accepts_what_keras_makemore_accepts():
    """The page's form checks, run in node on the probe values, agree with `SamplingControls`."""
    source = (ROOT / "export" / "web" / "page.js").read_text(encoding="utf-8")
    checks = {name: check for name, check in re.findall(r"number\('(\w+)', (v => [^,]+?), '", source)
              if name in PROBES}
    shown = {name: PROBES[name] for name in checks}
    assert set(shown) == {"temperature", "top_k", "top_p"}
    program = "const probes = " + json.dumps({k: [v if math.isfinite(v) else str(v) for v in vs]
                                              for k, vs in shown.items()}) + ";\n"
    program += "const checks = {" + ", ".join(f"{name}: {check}" for name, check in checks.items()) + "};\n"
    program += ("const out = {}; for (const [k, vs] of Object.entries(probes)) out[k] = vs.map(v => "
                "Boolean(checks[k](typeof v === 'string' ? Number(v.replace('inf', 'Infinity')) : v)));\n"
                "console.log(JSON.stringify(out));")
    result = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name, verdicts in json.loads(result.stdout).items():
        for value, verdict in zip(shown[name], verdicts):
            assert verdict == _accepted(name, value), (name, value)
