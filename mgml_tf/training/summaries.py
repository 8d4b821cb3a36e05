"""TensorBoard summaries written with TensorFlow core ops only.

``tf.summary.scalar`` / ``tf.summary.image`` are implemented by the ``tensorboard`` package, which is not a
runtime dependency (``pip install tensorboard`` to view the logs). These helpers write the same records with
``tf.summary.write`` and the plugin metadata that TensorBoard's scalar and image dashboards read (plugin names
``scalars`` / ``images``, data classes SCALAR / BLOB_SEQUENCE; version-0 plugin data is empty).
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin, data_class, description=""):
    m = summary_pb2.SummaryMetadata()
    m.plugin_data.plugin_name = plugin
    m.plugin_data.content = b""
    m.data_class = data_class
    m.summary_description = description
    return m.SerializeToString()


_SCALAR = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR)


def scalar(name, value, step=None):
    """A float32 scalar summary (the default writer's ``step`` if None)."""
    return tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=_SCALAR)


def image(name, images, step=None, description=""):
    """uint8 images ``[k, H, W, 3]`` as one image summary (PNG-encoded, TensorBoard's layout)."""
    images = np.asarray(images, np.uint8)
    h, w = images.shape[1], images.shape[2]
    encoded = [tf.io.encode_png(im) for im in images]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h))] + encoded)
    return tf.summary.write(
        name, tensor, step=step, metadata=_metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE, description)
    )


def read_events(folder):
    """``{tag: [(step, value)]}`` of the scalar summaries in an event folder (tests and tools)."""
    import glob
    import os

    from tensorflow.core.util import event_pb2

    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for v in event.summary.value:
                array = tf.make_ndarray(v.tensor)
                if v.metadata.plugin_data.plugin_name == "images" or array.dtype == object:
                    out.setdefault(v.tag, []).append((event.step, None))
                else:
                    out.setdefault(v.tag, []).append((event.step, float(array)))
    return out
