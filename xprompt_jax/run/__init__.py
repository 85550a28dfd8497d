"""The run around the model: data, evaluation, the run folder and the training loop (T5X's ``train.py``)."""
