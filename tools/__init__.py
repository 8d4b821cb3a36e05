"""Benchmark, study and figure tools of mgml_tf (not part of the installed package).

Each tool is a module whose work is a function with explicit arguments and whose command line is a thin
``main``; run one from the repository root as ``python -m tools.<name>`` (``--help`` lists its flags).
``tools.markdown_blocks`` writes the generated blocks of the docs, ``tools.machine`` describes the machine.
"""
