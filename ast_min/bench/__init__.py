"""Benchmarks that print side-by-side tables measured in one run: `python -m ast_min.bench NAME`.

    features   clips/s of the log-mel front end vs transformers and kaldi-native-fbank
    model      ms per clip of the model vs transformers
"""
