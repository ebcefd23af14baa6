"""The convolution paths (``ds_symmetry.ops.conv_paths``): every path's forward and both
gradients against ``lax.conv_general_dilated``, the switch that picks one, its record in the
provenance, a model's gradients under each path, and the benchmark's smoke run."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from ds_symmetry import provenance
from ds_symmetry.models import create_model
from ds_symmetry.ops import conv_paths, gradients, winograd
from ds_symmetry.ops.conv_paths import ConvPath
from ds_symmetry.ops.kernels import conv2d

_DN = ("NHWC", "HWIO", "NHWC")
MIXED = ("forward=rows,input_grad=im2col,weight_grad=xla",
         "forward=xla,input_grad=rows,weight_grad=im2col",
         "forward=im2col,weight_grad=rows")  # input_grad left to auto


def _reference(x, w, padding):
  """``lax``'s convolution, its output and both gradients for the output gradient ``g``."""
  padding = gradients._resolve_padding(padding, w.shape)  # pylint: disable=protected-access

  def fn(x, w, g):
    y, vjp = jax.vjp(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), padding,
                                                               dimension_numbers=_DN), x, w)
    return (y, *vjp(g))
  return fn


def _by_path(path, padding):
  def fn(x, w, g):
    y, vjp = jax.vjp(lambda x, w: conv_paths.convolve(x, w, padding, path=path), x, w)
    return (y, *vjp(g))
  return fn


def _operands(shape, k, c_out, padding, seed=0, kw=None):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, kw or k, shape[-1], c_out)), jnp.float32)
  y_shape = jax.eval_shape(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), gradients._resolve_padding(padding, w.shape),  # pylint: disable=protected-access
      dimension_numbers=_DN), x, w).shape
  g = jnp.asarray(rng.standard_normal(y_shape), jnp.float32)
  return x, w, g


# Winograd's float32 error is about 10x a direct convolution's (ops.winograd): its bound.
RTOL = {"winograd": 5e-5}


def _assert_close(actual, expected, rtol=1e-5):
  """Each array within ``rtol`` of the largest magnitude of its expected value."""
  for a, e in zip(actual, expected):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    assert a.shape == e.shape
    np.testing.assert_allclose(a, e, atol=rtol * max(np.abs(e).max(), 1e-30), rtol=0)


CASES = [  # (x shape, kernel size, C_out, padding)
    ((2, 12, 11, 3), 5, 4, "VALID"),
    ((1, 9, 10, 1), 4, 3, "SAME"),          # batch 1, C_in = 1, even kernel
    ((2, 7, 9, 2), 3, 5, "SAME"),           # odd sizes
    ((1, 5, 5, 1), 5, 2, "VALID"),          # a 1×1 output
    ((2, 4, 6, 2), 3, 3, ((5, 5), (5, 5))),  # padding wider than the kernel
    ((2, 7, 7, 2), 3, 2, ((0, 2), (1, 0))),  # asymmetric padding
]


@functools.lru_cache(maxsize=None)
def _case(index):
  """Operands and lax's output and gradients of ``CASES[index]`` (computed once)."""
  shape, k, c_out, padding = CASES[index]
  x, w, g = _operands(shape, k, c_out, padding)
  return (x, w, g), jax.jit(_reference(x, w, padding))(x, w, g)


@pytest.mark.parametrize("path", conv_paths.PATHS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_path_gives_lax_values_and_gradients(case, path):
  (x, w, g), expected = _case(case)
  actual = jax.jit(_by_path(path, CASES[case][3]))(x, w, g)
  _assert_close(actual, expected, RTOL.get(path, 1e-5))
  assert [a.dtype for a in actual] == [jnp.float32] * 3


@pytest.mark.parametrize("path", MIXED)
@pytest.mark.parametrize("case", [0, 1])
def test_paths_mixed_per_piece_give_lax_values_and_gradients(case, path):
  (x, w, g), expected = _case(case)
  _assert_close(jax.jit(_by_path(path, CASES[case][3]))(x, w, g), expected)


@pytest.mark.parametrize("custom", [True, False])
def test_mixed_paths_follow_the_hand_written_gradients_switch(custom):
  # An "xla" input gradient inside a mixed path is the zero-row-skipping one while the
  # hand-written gradients are on, JAX's transpose rule while they are off: both lax's values.
  x, w, g = _operands((2, 10, 9, 3), 5, 4, "SAME", seed=1)
  expected = jax.jit(_reference(x, w, "SAME"))(x, w, g)
  with gradients.custom_gradients(custom):
    actual = jax.jit(_by_path("forward=im2col,input_grad=xla,weight_grad=rows", "SAME"))(x, w, g)
  _assert_close(actual, expected)


@pytest.mark.slow  # a compilation per example
@settings(max_examples=12, deadline=None, derandomize=True)
@given(batch=st.integers(1, 2), height=st.integers(3, 9), width=st.integers(3, 9),
       c_in=st.integers(1, 3), c_out=st.integers(1, 3), kh=st.integers(1, 3),
       kw=st.integers(1, 3), same=st.booleans())
def test_the_formulations_on_random_shapes(batch, height, width, c_in, c_out, kh, kw, same):
  padding = "SAME" if same else "VALID"
  x, w, g = _operands((batch, height, width, c_in), kh, c_out, padding, seed=height, kw=kw)
  expected = _reference(x, w, padding)(x, w, g)

  @jax.jit
  def formulations(x, w, g):
    pad = gradients._resolve_padding(padding, w.shape)  # pylint: disable=protected-access
    return (conv_paths.conv_im2col(x, w, pad), conv_paths.conv_rows(x, w, pad),
            conv_paths.input_grad_im2col(g, w, pad, x.shape),
            conv_paths.input_grad_rows(g, w, pad, x.shape),
            conv_paths.weight_grad_im2col(x, g, w.shape, pad),
            conv_paths.weight_grad_rows(x, g, w.shape, pad))
  y1, y2, dx1, dx2, dw1, dw2 = formulations(x, w, g)
  _assert_close([y1, y2, dx1, dx2, dw1, dw2], [expected[0]] * 2 + [expected[1]] * 2
                + [expected[2]] * 2)
  if winograd.supports(w.shape):
    _assert_close(jax.jit(_by_path("winograd", padding))(x, w, g), expected, RTOL["winograd"])


def test_the_patches_are_laid_out_as_documented():
  x = jnp.arange(2 * 4 * 5 * 3, dtype=jnp.float32).reshape(2, 4, 5, 3)
  pad = ((1, 0), (0, 2))
  patches = conv_paths.im2col_patches(x, (2, 3), pad)
  xp = np.pad(np.asarray(x), ((0, 0), (1, 0), (0, 2), (0, 0)))
  assert patches.shape == (2, 4, 5, 2 * 3 * 3)
  n, i, j, a, b, c = 1, 2, 3, 1, 2, 1
  assert patches[n, i, j, (a * 3 + b) * 3 + c] == xp[n, i + a, j + b, c]
  unrolled = conv_paths.width_patches(x, (2, 3), pad)
  assert unrolled.shape == (2, 5, 5, 3 * 3)
  assert unrolled[n, i + a, j, b * 3 + c] == xp[n, i + a, j + b, c]


@pytest.mark.parametrize("path", conv_paths.PATHS)
def test_bfloat16_compute_gives_lax_values_within_bfloat16_rounding(path):
  x, w, g = _operands((2, 10, 10, 3), 5, 4, "VALID", seed=2)
  expected = jax.jit(_reference(x, w, "VALID"))(x, w, g)

  def fn(x, w, g):
    y, vjp = jax.vjp(lambda x, w: conv2d(x, w, compute_dtype=jnp.bfloat16), x, w)
    return (y, *vjp(g))
  with conv_paths.conv_path(path):
    actual = jax.jit(fn)(x, w, g)
  assert [a.dtype for a in actual] == [jnp.float32] * 3
  _assert_close(actual, expected, rtol=3e-2)


@pytest.mark.parametrize("path, uses_conv", [("xla", True), ("im2col", False), ("rows", False),
                                             ("winograd", False),
                                             ("forward=im2col,weight_grad=xla", True)])
def test_a_forced_path_is_the_one_compiled(path, uses_conv):
  x, w, g = _operands((2, 8, 8, 2), 3, 2, "VALID")
  with conv_paths.conv_path(path):
    text = jax.jit(_by_path(None, "VALID")).lower(x, w, g).as_text()
  assert ("convolution" in text) == uses_conv


AVX512 = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512_bf16"})


WINOGRAD = conv_paths.WINOGRAD


@pytest.mark.parametrize("x_shape, kernel_shape, on_avx512", [
    ((64, 28, 28, 1), (5, 5, 1, 128), conv_paths.XLA),      # first layer: one input channel
    ((64, 24, 24, 128), (5, 5, 128, 128), WINOGRAD),         # inner layers
    ((64, 12, 12, 64), (5, 5, 64, 64), WINOGRAD),
    ((64, 12, 12, 64), (1, 1, 64, 64), conv_paths.XLA),      # a kernel the tiles cannot take
    ((64, 12, 12, 64), (9, 9, 64, 64), conv_paths.XLA),
    ((128, 16, 16, 128), (3, 3, 128, 128), conv_paths.XLA),  # tiled, but it lost there
    ((64, 16, 16, 32), (7, 7, 32, 32), conv_paths.XLA),
    ((64, 12, 12, 32), (5, 5, 32, 32), conv_paths.XLA),      # fewer than 64 input channels
])
def test_auto_takes_winograd_only_where_it_was_measured(x_shape, kernel_shape, on_avx512):
  """Winograd on AVX-512 CPUs for the layers it won (ops.conv_paths); XLA on CPUs where the
  paths were not measured and on GPUs / TPUs; the provenance says which."""
  choose = conv_paths.choose_conv_path
  assert choose(AVX512, "cpu", x_shape, kernel_shape) == on_avx512
  assert "winograd" in conv_paths.auto_description(AVX512, "cpu")
  for flags, backend in ((set(), "cpu"), ({"avx2", "fma"}, "cpu"), (AVX512, "gpu"),
                         (AVX512, "tpu")):
    assert choose(frozenset(flags), backend, x_shape, kernel_shape) == conv_paths.XLA
    assert conv_paths.auto_description(frozenset(flags), backend) == "xla"
  assert choose(AVX512, "cpu") == conv_paths.XLA   # no shape: nothing to decide on


def test_auto_is_todays_path_where_it_chooses_xla():
  x, w, _ = _operands((2, 12, 12, 2), 3, 2, "VALID")   # 10x10 outputs, 2 input channels
  with conv_paths.conv_path("auto"):
    auto = jax.jit(jax.grad(lambda x, w: jnp.sum(conv2d(x, w) ** 2), (0, 1))).lower(x, w)
  today = jax.jit(jax.grad(lambda x, w: jnp.sum(gradients.conv2d_stride1(x, w) ** 2),
                           (0, 1))).lower(x, w)
  assert auto.as_text() == today.as_text()


def test_cpu_flags_are_a_set_of_strings():
  flags = conv_paths.cpu_flags()
  assert isinstance(flags, frozenset) and all(isinstance(f, str) for f in flags)


def test_the_switch_parses_and_a_bad_value_is_one_line(monkeypatch):
  parse = conv_paths.parse_conv_path
  assert parse(None) == parse("") == parse(" AUTO ") == conv_paths.AUTO
  assert parse("im2col") == ConvPath("im2col", "im2col", "im2col")
  assert parse("xla") == conv_paths.XLA
  assert parse("forward=rows, input-grad=xla") == ConvPath("rows", "xla", None)
  assert parse("weight_grad=auto,forward=im2col") == ConvPath("im2col", None, None)
  assert ConvPath("rows", None, "xla").describe() == "forward=rows,input_grad=auto,weight_grad=xla"
  assert conv_paths.XLA.describe() == "xla"
  for bad in ("fast", "forward=fast", "forward", "speed=im2col", "forward=xla,forward=rows"):
    with pytest.raises(ValueError) as info:
      parse(bad)
    message = str(info.value)
    assert "\n" not in message and f"DS_SYMMETRY_CONV_PATH={bad!r}" in message
    assert all(name in message for name in ("auto", "xla", "im2col", "rows", "input_grad"))

  monkeypatch.setenv("DS_SYMMETRY_CONV_PATH", "forward=im2col")
  assert conv_paths.requested_conv_path() == ConvPath("im2col", None, None)
  assert conv_paths.current_conv_path() == ConvPath("im2col", "xla", "xla")
  with conv_paths.conv_path("rows"):  # the context manager wins over the environment
    assert conv_paths.current_conv_path() == ConvPath("rows", "rows", "rows")
    with conv_paths.conv_path(None):
      assert conv_paths.current_conv_path() == conv_paths.XLA
  monkeypatch.setenv("DS_SYMMETRY_CONV_PATH", "bogus")
  with pytest.raises(ValueError, match="DS_SYMMETRY_CONV_PATH='bogus'"):
    conv_paths.current_conv_path()
  with pytest.raises(ValueError, match="conv_path='nope'"):
    with conv_paths.conv_path("nope"):
      pass
  with pytest.raises(ValueError, match="conv_path="):
    with conv_paths.conv_path(ConvPath("im2col", "fft", None)):
      pass


def test_provenance_records_the_path(monkeypatch):
  monkeypatch.delenv("DS_SYMMETRY_CONV_PATH", raising=False)
  auto = conv_paths.auto_description()
  assert provenance.numeric_switches({})["conv_path"] == {
      "forward": "auto", "input_grad": "auto", "weight_grad": "auto", "auto": auto}
  with conv_paths.conv_path("forward=im2col,weight_grad=rows"):
    assert provenance.numeric_switches({})["conv_path"] == {
        "forward": "im2col", "input_grad": "auto", "weight_grad": "rows", "auto": auto}
  monkeypatch.setenv("DS_SYMMETRY_CONV_PATH", "bogus")
  switches = provenance.numeric_switches()
  assert switches["conv_path"] is None
  assert switches["environment"]["DS_SYMMETRY_CONV_PATH"] == "bogus"


@functools.lru_cache(maxsize=None)
def _model_gradients(name, path):
  """The loss and its gradient wrt every parameter of a small ``name`` model, traced under
  ``path`` (cached)."""
  model = create_model(name, num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  images = jax.random.normal(jax.random.key(1), (2, 12, 12, 1))
  labels = jnp.array([3, 7])

  def loss(params):
    logits = nnx.merge(graphdef, params, rest)(images)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
  with conv_paths.conv_path(path):
    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("path", ["im2col", "rows", "winograd", MIXED[0]])
@pytest.mark.parametrize("name", ["cnn", "gcnn"])
def test_a_models_loss_gradient_is_the_same_under_every_path(name, path):
  """The plain CNN (``nnx.Conv`` → ``ops.gradients.conv_general_dilated``) and the G-CNN
  (``ops.conv2d``) both follow the path; loss and gradients are XLA's path's."""
  value, grads = _model_gradients(name, "xla")
  other_value, other_grads = _model_gradients(name, path)
  rtol = RTOL.get(path, 1e-5)
  np.testing.assert_allclose(other_value, value, rtol=rtol)
  leaves = jax.tree_util.tree_leaves_with_path(other_grads)
  assert len(leaves) == len(jax.tree.leaves(grads)) > 0
  for (key, a), b in zip(leaves, jax.tree.leaves(grads)):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, atol=rtol * max(np.abs(b).max(), 1e-30), rtol=0,
                               err_msg=f"{path} {jax.tree_util.keystr(key)}")


def test_the_benchmark_runs_in_quick_mode(capsys):
  from benchmarks import common, conv_paths as bench  # pylint: disable=import-outside-toplevel
  rows = bench.run(quick=True, stacks={"tiny": (1, 4)}, layers=(1,), models=(),
                   repeats=1)
  assert {row["piece"] for row in rows} >= {"forward", "input-grad", "weight-grad"}
  assert all(row["xla_ms"] > 0 and row["im2col/current"] > 0 for row in rows)
  text = common.format_table(rows, bench.COLUMNS)
  assert "im2col/current" in text and "all pieces" in text
  assert "CPU:" in capsys.readouterr().out
  from benchmarks import run  # pylint: disable=import-outside-toplevel
  assert run.BENCHMARKS["conv_paths"] == "benchmarks.conv_paths"


def test_the_benchmarks_current_path_is_the_one_each_layer_takes():
  """``current`` of a layer's row is ``auto``'s choice for that layer's shape
  (``choose_conv_path``), and a forced path is every layer's."""
  from benchmarks import conv_paths as bench  # pylint: disable=import-outside-toplevel
  rows = bench.run(quick=True, stacks={"tiny": (1, 4)}, layers=(0,), models=(), repeats=1)
  chosen = conv_paths.choose_conv_path(x_shape=(8, 28, 28, 1), kernel_shape=(5, 5, 1, 4))
  by_piece = {row["piece"]: row["current"] for row in rows if row["layer"] == 0}
  assert by_piece == {"forward": chosen.forward, "weight-grad": chosen.weight_grad}
  with conv_paths.conv_path("im2col"):  # a forced path is every layer's current path
    forced = bench.run(quick=True, stacks={"tiny": (1, 4)}, layers=(0,), models=(), repeats=1)
  assert {row["current"] for row in forced if row["layer"] == 0} == {"im2col"}


@pytest.mark.slow  # compiles three training steps
def test_the_benchmarks_training_step_rows():
  from benchmarks import conv_paths as bench  # pylint: disable=import-outside-toplevel
  rows = bench.run(quick=True, stacks={}, models=("cnn",), repeats=1,
                   model_options={"channels": 4, "num_blocks": 2})
  (row,) = rows
  assert row["stack"] == "cnn" and row["current"] == conv_paths.requested_conv_path().describe()
  assert all(row[f"{path}_ms"] > 0 and row[f"{path}/current"] > 0 for path in conv_paths.PATHS)
