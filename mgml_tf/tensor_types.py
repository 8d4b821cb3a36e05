"""Type aliases of the public API's annotations."""

import numpy as np
import tensorflow as tf

#: An array argument of the maths functions (``mgml_tf.memory``, ``mgml_tf.losses``): anything
#: ``tf.convert_to_tensor`` accepts works; tensors, variables and NumPy arrays are the usual ones.
TensorLike = tf.Tensor | tf.Variable | np.ndarray
