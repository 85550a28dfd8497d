"""The frozen backbone: T5 1.0/1.1 (``t5``), its named sizes (``config``) and decoding (``decoding``)."""
