"""Grid, gap filling, scaling, windows, seasonality and the fitted Preprocessor (fit once, used the same way in training and inference)."""
