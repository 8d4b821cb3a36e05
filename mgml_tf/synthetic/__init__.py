"""The procedural scene generator: synthetic multi-domain street scenes written in real dataset layouts.

Two independent scene families with the same API (`families` is their registry): `streets` (flat perspective
streets, z-buffered) and `towns` (ray-cast 3-D towns through distorted cameras). `layout_writer` writes
either in the published layouts the loaders of `mgml_tf.data` read (it imports their tables; `mgml_tf.data`
does not import this package). One command line for both: ``python -m mgml_tf.synthetic --family=...``
(`cli`). See docs/SYNTHETIC.md.

Importing this package imports nothing else, so `families` is cheap to read (the training flags do).
"""
