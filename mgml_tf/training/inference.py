"""Inference for evaluation and prediction: whole image or sliding window, optional flip averaging."""

import math

import numpy as np
import tensorflow as tf

from mgml_tf import metrics as metrics_lib


def _window_starts(size, window, stride):
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride)) + [size - window]
    return sorted(set(starts))


class Predictor:
    """Class probabilities (and memory weights) of a ``MemorySegmenter`` for float images ``[1,H,W,3]``.

    ``sliding_window``: windows of ``window_size`` (padded when the image is smaller) with ``overlap``,
    probabilities averaged where windows overlap; ``flip``: average with the mirrored image's prediction.
    Runs in inference mode through one ``tf.function`` with a dynamic spatial shape.
    """

    def __init__(self, model, sliding_window=False, window_size=(512, 1024), overlap=1.0 / 3.0, flip=False):
        self.model = model
        self.sliding_window = bool(sliding_window)
        self.window = tuple(int(w) for w in window_size)
        self.overlap = float(overlap)
        self.flip = bool(flip)
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def probs(images):
            p = tf.nn.softmax(model(images, training=False), axis=-1)
            if self.flip:
                p_flip = tf.nn.softmax(model(tf.reverse(images, axis=[2]), training=False), axis=-1)
                p = 0.5 * (p + tf.reverse(p_flip, axis=[2]))
            return p

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def probs_and_weights(images):
            p, w = model.predict_with_weights(images)
            return p, (w if w is not None else tf.zeros(tf.concat([tf.shape(p)[:3], [0]], 0)))

        self._probs = probs
        self._probs_and_weights = probs_and_weights

    def probabilities(self, images):
        images = tf.convert_to_tensor(images, tf.float32)
        if not self.sliding_window:
            return self._probs(images).numpy()
        b, h, w = images.shape[0], images.shape[1], images.shape[2]
        wh, ww = self.window
        pad_h, pad_w = max(0, wh - h), max(0, ww - w)
        padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]) if pad_h or pad_w else images
        hp, wp = h + pad_h, w + pad_w
        sh = max(1, int(math.ceil(wh * (1 - self.overlap))))
        sw = max(1, int(math.ceil(ww * (1 - self.overlap))))
        total = None
        count = np.zeros((1, hp, wp, 1), np.float32)
        for y in _window_starts(hp, wh, sh):
            for x in _window_starts(wp, ww, sw):
                p = self._probs(padded[:, y : y + wh, x : x + ww]).numpy()
                if total is None:
                    total = np.zeros((b, hp, wp, p.shape[-1]), np.float32)
                total[:, y : y + wh, x : x + ww] += p
                count[:, y : y + wh, x : x + ww] += 1.0
        return (total / count)[:, :h, :w]

    def probabilities_and_weights(self, images):
        """``(probabilities, memory weights or None)`` of whole images (no sliding window, no flip)."""
        p, w = self._probs_and_weights(tf.convert_to_tensor(images, tf.float32))
        w = w.numpy()
        return p.numpy(), (w if w.shape[-1] else None)


def evaluate_domain(predictor, dataset, num_classes, ignore_index=255, max_images=0, on_image=None):
    """Confusion matrix and image count of one target over an ``evaluation_dataset`` (batch 1).

    ``on_image(index, image, label, prediction)`` is called for every image (e.g. to save PNGs or keep
    summary images).
    """
    confusion = np.zeros((num_classes, num_classes), np.int64)
    n = 0
    for images, labels in dataset:
        for i in range(images.shape[0]):
            if max_images and n >= max_images:
                return confusion, n
            image = images[i : i + 1]
            label = labels[i].numpy()
            prediction = np.argmax(predictor.probabilities(image)[0], axis=-1)
            confusion += metrics_lib.confusion_matrix(label, prediction, num_classes, ignore_index)
            if on_image is not None:
                on_image(n, image[0].numpy(), label, prediction)
            n += 1
    return confusion, n
