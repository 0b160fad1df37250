"""The Domtool configuration language: lexer, parser, type checker, evaluator."""
