"""The HTTP edge: a Litestar app with llama-server's routes. JSON stops here."""
