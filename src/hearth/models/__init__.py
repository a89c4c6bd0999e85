"""Core model layer: find and load models, generate text, talk to backends, inspect weights."""
