"""The functional LSTM: cell, layer, custom-VJP recurrence, cuDNN binding, mixed precision."""
