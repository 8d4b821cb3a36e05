"""A ``keras.layers.Conv2D`` whose dilated convolutions run on the device's own kernel.

Keras 3 on TensorFlow convolves through ``tf.nn.convolution``, which sends every dilated convolution through
space-to-batch: pad the input, ``SpaceToBatchND`` (the batch grows by ``rate**2``), a plain convolution,
``BatchToSpaceND``, and the same detour again in each gradient. At the feature maps a segmentation network
dilates (ASPP's rates 6/12/18 on a 16x16 to 48x48 map) the padded, re-batched input is many times the real
one. cuDNN and oneDNN convolve with dilation directly: ``Conv2D`` and both of its gradient kernels take a
``dilations`` attribute.

Which path a dilated convolution takes is chosen per compute dtype, once, by :func:`dilated_convolution_path`:

- ``"native"``: ``tf.nn.conv2d(..., dilations=rate)``;
- ``"space_to_batch"``: Keras's own ``ops.conv`` (the fallback).

The mode is ``"auto"`` unless :func:`set_dilated_convolution_mode` or the environment variable
``MGML_TF_DILATED_CONV`` (``auto``, ``native``, ``space_to_batch``) says otherwise. ``auto`` runs a tiny dilated
convolution with its first and second derivatives on every visible device type (CPU, and GPU if any) and takes
the native path only where all of them run it. On CPU that is float32 and bfloat16 with oneDNN (TensorFlow's
default on x86 Linux); TensorFlow's Eigen CPU kernels have no dilated gradient, so float64 (the
finite-difference tests), float16, and float32 with ``TF_ENABLE_ONEDNN_OPTS=0`` take the fallback. Forward
convolutions with dilation run natively on every CPU build, so graphs traced on the native path (exports
included) serve anywhere.

Both paths compute the same function with the same padding ("same": total padding ``rate * (k - 1)``, the
smaller half first); they differ only in float rounding, at any order of differentiation. Weights, variable
paths, ``.keras`` weight paths and configs are those of ``keras.layers.Conv2D``: checkpoints and ``.keras``
files move between the two.
"""

import keras
import tensorflow as tf

from mgml_tf.layers.kernel_mode import KernelMode

MODES = ("auto", "native", "space_to_batch")
_MODE = KernelMode("MGML_TF_DILATED_CONV", MODES, "dilated convolution mode")
_probed = {}  # (dtype name, device types) -> True when every device type runs dilated conv and gradients


def set_dilated_convolution_mode(mode):
    """Chooses the path of dilated convolutions traced from now on: ``auto``, ``native`` or
    ``space_to_batch`` (``None``: back to ``MGML_TF_DILATED_CONV`` or ``auto``)."""
    _MODE.set(mode)


def dilated_convolution_mode():
    """The mode in force: :func:`set_dilated_convolution_mode`'s, else ``MGML_TF_DILATED_CONV``'s, else auto."""
    return _MODE.get()


def _device_types():
    return ("CPU",) + (("GPU",) if tf.config.list_logical_devices("GPU") else ())


def _native_runs(dtype, device_type):
    """True when ``device_type`` runs a dilated ``Conv2D`` and both its gradient kernels in ``dtype``.

    Their gradients are built from the same three kernels, so this covers every order of differentiation. The
    kernels are called directly: a probe traced inside a training step runs eagerly (``init_scope``), where
    the step's gradient tapes are paused and a tape would record nothing."""
    with tf.init_scope(), tf.device(f"/{device_type}:0"):
        x = tf.ones([1, 5, 5, 2], dtype)
        k = tf.ones([3, 3, 2, 2], dtype)
        conv = dict(strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 2, 1])
        try:
            y = tf.raw_ops.Conv2D(input=x, filter=k, **conv)
            tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=k, out_backprop=y, **conv)
            tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(k), out_backprop=y, **conv)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            return False
    return True


def dilated_convolution_path(dtype):
    """``"native"`` or ``"space_to_batch"``: the path a dilated convolution in ``dtype`` takes (see the module
    docstring). ``native`` forced where a device cannot run it is an error, not a silent fallback."""
    dtype = tf.as_dtype(dtype)
    mode = dilated_convolution_mode()
    if mode == "space_to_batch":
        return mode
    devices = _device_types()
    key = (dtype.name, devices)
    if key not in _probed:
        _probed[key] = all(_native_runs(dtype, d) for d in devices)
    if _probed[key]:
        return "native"
    if mode == "native":
        raise ValueError(
            f"dilated convolutions were forced native ({_MODE.env} or set_dilated_convolution_mode), "
            f"but a device here ({', '.join(devices)}) has no dilated {dtype.name} Conv2D gradient; "
            "use mode auto or space_to_batch"
        )
    return "space_to_batch"


@keras.saving.register_keras_serializable(package="mgml_tf")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (channels last) whose dilated, stride-1 convolution takes the path of
    :func:`dilated_convolution_path`; undilated or strided ones are Keras's own.

    The class is named ``Conv2D`` on purpose: ``.keras`` files address weights by the snake-cased class name
    (``conv2d``, ``conv2d_1``, ...), so another name would move every convolution's weights in the file."""

    def convolution_op(self, inputs, kernel):
        dilated = any(r != 1 for r in self.dilation_rate)
        strided = any(s != 1 for s in self.strides)
        if (
            not dilated
            or strided
            or self.data_format != "channels_last"
            or dilated_convolution_path(inputs.dtype) != "native"
        ):
            return super().convolution_op(inputs, kernel)
        return tf.nn.conv2d(inputs, kernel, strides=1, padding=self.padding.upper(), dilations=list(self.dilation_rate))
