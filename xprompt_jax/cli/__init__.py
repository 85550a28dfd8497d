"""The entry layer: the ``xprompt-jax`` command, its gin files and bindings, and the command table.

Only this package imports gin (besides the seqio task modules, which register gin-configurable data
folders). Library modules never import from here: they take settings objects as arguments
(``tests/test_code_shape.py`` keeps that rule).
"""
