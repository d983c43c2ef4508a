"""The functional LSTM (cell, layer, custom-VJP recurrence, cuDNN binding), mixed precision,
dropout and the NNX parameter helpers both families share."""
