"""Terminology: value sets as data, compiled to lookup tables once per process."""
